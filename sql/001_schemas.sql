-- nmdose database: one schema per concern. Tables of later stages come in later migrations.
CREATE SCHEMA IF NOT EXISTS rpacs;  -- census of the source PACS, retrieval into the research PACS
CREATE SCHEMA IF NOT EXISTS dose;   -- dose records extracted on the dose PACS side
CREATE SCHEMA IF NOT EXISTS jobs;   -- durable work queue shared by plugin workers and the CLI

-- The durable queue: Orthanc callbacks only insert here; worker threads claim rows with
-- SELECT ... FOR UPDATE SKIP LOCKED. (kind, key) makes enqueueing idempotent.
CREATE TABLE jobs.queue (
    id            bigserial PRIMARY KEY,
    kind          text        NOT NULL,
    key           text        NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state         text        NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    not_before    timestamptz NOT NULL DEFAULT now(),
    locked_by     text,
    locked_at     timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (kind, key)
);
CREATE INDEX queue_ready_idx ON jobs.queue (kind, not_before) WHERE state = 'pending';
CREATE INDEX queue_state_idx ON jobs.queue (kind, state);
