-- A job asked for again while it runs (e.g. a study that becomes stable again during its forward) is run once
-- more when the current run completes, instead of the request being lost.
ALTER TABLE jobs.queue ADD COLUMN rerun boolean NOT NULL DEFAULT false;
