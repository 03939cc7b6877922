-- Research projects (issue 17 item 2, docs/projects.md): a named set of studies of the research PACS with its
-- members. Access comes from the token (realm role `project:<name>:read|write`, or a group `/projects/<name>`)
-- or from the explicit members below; admins see every project. Studies are named by their StudyInstanceUID
-- only (no patient data here). No sequences: the web role writes these rows (nmdose.db.roles.WEB_WRITES) and
-- needs nothing else for it.
CREATE TABLE rpacs.project (
    name         text        PRIMARY KEY
                 CHECK (name ~ '^[a-z0-9][a-z0-9_-]{1,62}$'),  -- nmdose.projects.names.NAME_RE
    description  text        NOT NULL DEFAULT '',
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- A study of a project; re-adding it is a no-op (the first add is kept). `how`: uid, accession, description
-- (a census filter), csv, upload. The study's fields come from the census (rpacs.study) when it knows the
-- study; an uploaded study the census never saw keeps what its files said (date, description, modalities,
-- counts of the instances uploaded).
CREATE TABLE rpacs.project_study (
    project            text        NOT NULL REFERENCES rpacs.project (name) ON DELETE CASCADE ON UPDATE CASCADE,
    study_instance_uid text        NOT NULL CHECK (study_instance_uid ~ '^[0-9]+(\.[0-9]+)*$'
                                                   AND length(study_instance_uid) <= 64),
    added_by           text        NOT NULL,
    added_at           timestamptz NOT NULL DEFAULT now(),
    how                text        NOT NULL CHECK (how IN ('uid', 'accession', 'description', 'csv', 'upload')),
    study_date         date,
    description        text,
    modalities         text[],
    series_count       integer,
    instance_count     integer,
    PRIMARY KEY (project, study_instance_uid)
);
CREATE INDEX project_study_uid_idx ON rpacs.project_study (study_instance_uid);

-- Members beyond the token's roles and groups: a user (preferred_username or sub) or a group path.
CREATE TABLE rpacs.project_member (
    project    text        NOT NULL REFERENCES rpacs.project (name) ON DELETE CASCADE ON UPDATE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('user', 'group')),
    principal  text        NOT NULL CHECK (length(principal) BETWEEN 1 AND 256),
    access     text        NOT NULL CHECK (access IN ('read', 'write')),
    added_by   text        NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, kind, principal)
);
