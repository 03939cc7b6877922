-- The watch-folder importer (docs/import.md): one row per import of one dropped folder. The folder's name holds
-- the patient's name and number, so it is never stored: `folder_hash` is the HMAC-SHA-256 (keyed with the secret
-- NMDOSE_IMPORT_HASH_KEY, "hmac:" prefix) or plain SHA-256 ("sha256:") of the name. Studies are named by their
-- StudyInstanceUIDs. The runtime roles' grants come from the schema (nmdose.db.roles.grant_runtime): the worker
-- writes these rows, the web role reads them for the research page.
CREATE TABLE rpacs.import_run (
    id               bigserial PRIMARY KEY,
    folder_hash      text        NOT NULL,
    content_key      text        NOT NULL,  -- SHA-256 of the folder's relative paths, sizes and mtimes
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    outcome          text        NOT NULL DEFAULT 'running'
                     CHECK (outcome IN ('running', 'archived', 'failed', 'retry', 'interrupted')),
    trigger          text        NOT NULL DEFAULT 'folder' CHECK (trigger IN ('folder', 'watch')),
    pattern_matched  boolean,                -- null: no pattern configured
    files            integer     NOT NULL DEFAULT 0,  -- every file in the folder
    dicom_files      integer     NOT NULL DEFAULT 0,
    skipped_files    integer     NOT NULL DEFAULT 0,  -- not DICOM, DICOMDIR
    bad_files        integer     NOT NULL DEFAULT 0,  -- DICOM that cannot be read or was refused
    stored_files     integer     NOT NULL DEFAULT 0,  -- sent by this run and confirmed in the research PACS
    already_stored   integer     NOT NULL DEFAULT 0,  -- already in the research PACS: not sent again
    studies          integer     NOT NULL DEFAULT 0,
    study_uids       text[]      NOT NULL DEFAULT '{}',
    bytes            bigint      NOT NULL DEFAULT 0,  -- of the DICOM files
    seconds          double precision,
    destination      text,                   -- archive or failed sub-folder (yyyymmdd_hhmmss), never the name
    log_file         text,
    error            text
);
CREATE INDEX import_run_started_idx ON rpacs.import_run (started_at DESC);
CREATE INDEX import_run_folder_idx ON rpacs.import_run (folder_hash, outcome);
