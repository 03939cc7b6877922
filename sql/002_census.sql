-- Census of the source PACS (issue 3): one row per StudyInstanceUID, every change, every C-FIND query.

-- One census run. A stopped run (PACS down, process killed) is continued by the next `census run` from
-- `resume_from`: every day before it has been queried completely.
CREATE TABLE rpacs.census_run (
    id                bigserial   PRIMARY KEY,
    source_node       text        NOT NULL,
    state             text        NOT NULL DEFAULT 'running'
                      CHECK (state IN ('running', 'done', 'failed')),
    date_from         date,                    -- requested bound (NULL: earliest found by probing)
    date_to           date        NOT NULL,    -- last day queried (default: the day the run started)
    earliest_date     date,                    -- earliest StudyDate on the PACS (probing), the census start
    resume_from       date,                    -- first day not yet queried completely
    modality_matching text,                    -- native | filter: how target modalities were selected
    requests          integer     NOT NULL DEFAULT 0,   -- C-FIND requests sent (all attempts)
    studies_seen      integer     NOT NULL DEFAULT 0,
    studies_new       integer     NOT NULL DEFAULT 0,
    studies_changed   integer     NOT NULL DEFAULT 0,
    capped_days       jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- still capped at the finest split
    started_by        text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    error             text
);
CREATE INDEX census_run_node_idx ON rpacs.census_run (source_node, id DESC);

-- Every C-FIND the census sent: range, answers, duration, outcome.
CREATE TABLE rpacs.census_query (
    id          bigserial   PRIMARY KEY,
    run_id      bigint      NOT NULL REFERENCES rpacs.census_run (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('probe', 'range', 'check', 'series')),
    date_from   date        NOT NULL,
    date_to     date        NOT NULL,
    time_range  text,                      -- StudyTime range when a day was split, e.g. 080000-115959
    modalities  text,                      -- ModalitiesInStudy matching value sent, NULL when none
    status      text        NOT NULL CHECK (status IN ('complete', 'capped', 'capped_at_finest', 'failed')),
    answers     integer     NOT NULL DEFAULT 0,
    seconds     real        NOT NULL,
    attempt     integer     NOT NULL DEFAULT 1,
    error       text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX census_query_run_idx ON rpacs.census_query (run_id, id);

-- One row per study found on a source PACS. Modalities as found are never altered; the corrected set and the
-- reason are computed per StudyDescription (majority or modality_rules) and never touch the source PACS.
CREATE TABLE rpacs.study (
    study_uid            text        PRIMARY KEY,
    source_node          text        NOT NULL,
    study_date           date,
    study_time           text        NOT NULL DEFAULT '',
    description          text        NOT NULL DEFAULT '',
    modalities_found     text[]      NOT NULL DEFAULT '{}',
    modalities_corrected text[],                 -- NULL: the found set is the expected one
    correction_reason    text,
    accession_number     text        NOT NULL DEFAULT '',
    patient_id           text        NOT NULL DEFAULT '',
    series_count         integer,
    instance_count       integer,
    is_target            boolean     NOT NULL DEFAULT false,  -- description is a retrieval target
    first_seen           timestamptz NOT NULL DEFAULT now(),
    last_seen            timestamptz NOT NULL DEFAULT now(),
    last_changed         timestamptz,
    first_run_id         bigint      REFERENCES rpacs.census_run (id) ON DELETE SET NULL,
    last_run_id          bigint      REFERENCES rpacs.census_run (id) ON DELETE SET NULL
);
CREATE INDEX study_date_idx ON rpacs.study (study_date);
CREATE INDEX study_description_idx ON rpacs.study (description);

-- What changed on the PACS between two censuses (field -> old/new), one row per study and run.
CREATE TABLE rpacs.study_change (
    id         bigserial   PRIMARY KEY,
    study_uid  text        NOT NULL REFERENCES rpacs.study (study_uid) ON DELETE CASCADE,
    run_id     bigint      REFERENCES rpacs.census_run (id) ON DELETE SET NULL,
    changes    jsonb       NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (study_uid, run_id)
);

-- Per StudyDescription: whether it is a target and who made it one (`census accept`), expected modalities.
CREATE TABLE rpacs.description_rule (
    description         text        PRIMARY KEY,
    is_target           boolean     NOT NULL DEFAULT true,
    source              text        NOT NULL CHECK (source IN ('config', 'accepted')),
    expected_modalities text[],
    added_by            text,
    added_at            timestamptz NOT NULL DEFAULT now()
);
