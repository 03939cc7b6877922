-- Pseudonymised copies of a project's studies (issue 17 item 3, docs/pseudonymise.md): one row per study, project
-- and target (the pseudoPACS node, or a folder). It names the original study by its StudyInstanceUID and the copy
-- by its pseudonym and new StudyInstanceUID; no PatientID is stored: turning a pseudonym back into a patient
-- needs the project key (from the secret store) and the census, through `nmdose pseudonymise reidentify`, which
-- needs patient:reidentify and is audited. `state`: running while an export writes it (a crash leaves it running;
-- the next run redoes the study, which stores nothing twice), done, failed (error says why).
CREATE TABLE rpacs.pseudonymised_copy (
    project            text        NOT NULL,
    study_instance_uid text        NOT NULL,
    target             text        NOT NULL,   -- node name, or folder:<absolute path>
    pseudonym          text,
    copy_study_uid     text,
    dates              text        NOT NULL CHECK (dates IN ('keep', 'shift')),
    keep_dose          boolean     NOT NULL,
    state              text        NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    instances          integer     NOT NULL DEFAULT 0,
    stored             integer     NOT NULL DEFAULT 0,   -- written this run
    already_stored     integer     NOT NULL DEFAULT 0,   -- the target had it (an earlier run)
    error              text,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    PRIMARY KEY (project, study_instance_uid, target)
);
CREATE INDEX pseudonymised_copy_pseudonym_idx ON rpacs.pseudonymised_copy (project, pseudonym);
