-- Retrieval of studies from the source PACS into the research PACS (issue 4).
-- One row per study (the domain state); each step of each attempt in retrieval_event. The work itself goes
-- through jobs.queue (kind 'retrieve', key = StudyInstanceUID), which owns attempts and back-off.
CREATE TABLE rpacs.retrieval (
    study_instance_uid  text PRIMARY KEY,
    source_node         text        NOT NULL,
    origin              text        NOT NULL DEFAULT 'census' CHECK (origin IN ('census', 'csv', 'manual')),
    state               text        NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'moving', 'verifying', 'done', 'partial', 'failed')),
    attempts            integer     NOT NULL DEFAULT 0,
    backend             text,
    expected_instances  integer,
    received_instances  integer,
    missing_series      text[]      NOT NULL DEFAULT '{}',
    bytes_received      bigint,
    last_status         text,
    last_error          text,
    log_path            text,
    queued_at           timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retrieval_state_idx ON rpacs.retrieval (state);

CREATE TABLE rpacs.retrieval_event (
    id                  bigserial PRIMARY KEY,
    study_instance_uid  text        NOT NULL REFERENCES rpacs.retrieval ON DELETE CASCADE,
    at                  timestamptz NOT NULL DEFAULT now(),
    step                text        NOT NULL,  -- queued | move | verify | defer | retry | done | failed | skipped
    attempt             integer,
    backend             text,
    ok                  boolean,
    dicom_status        text,
    seconds             double precision,
    completed           integer,
    failed              integer,
    detail              text,
    log_path            text
);
CREATE INDEX retrieval_event_study_idx ON rpacs.retrieval_event (study_instance_uid, at);

-- CSV lists given to `nmdose retrieve csv`: what each row matched, for the report.
CREATE TABLE rpacs.csv_request (
    id                  bigserial PRIMARY KEY,
    file                text        NOT NULL,
    line                integer     NOT NULL,
    key                 text        NOT NULL,
    value               text        NOT NULL,
    outcome             text        NOT NULL,
    studies             text[]      NOT NULL DEFAULT '{}',
    at                  timestamptz NOT NULL DEFAULT now()
);
