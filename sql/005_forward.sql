-- Forwarding of dose objects and one image per series to the dose PACS (issue 5), the selective transfer and
-- the auto_delete clean-up. The work goes through jobs.queue (kind 'forward', key = StudyInstanceUID).

-- One row per study the forward stage has seen.
CREATE TABLE rpacs.forward_study (
    study_instance_uid  text PRIMARY KEY,
    orthanc_id          text,
    destination         text        NOT NULL,
    state               text        NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sending', 'done', 'failed')),
    trigger             text        NOT NULL DEFAULT 'stable'
                        CHECK (trigger IN ('stable', 'start', 'manual', 'selective')),
    attempts            integer     NOT NULL DEFAULT 0,
    selected            integer,    -- instances the selection chose (dose objects + samples)
    dose_objects        integer,
    sample_images       integer,
    sent                integer,    -- sent by the last run (already-forwarded ones are not sent again)
    last_error          text,
    study_last_update   timestamptz, -- Orthanc's LastUpdate of the study when it became stable
    stable_at           timestamptz, -- when the stage saw it stable (STABLE_STUDY, start, or manual request)
    started_at          timestamptz,
    finished_at         timestamptz,
    purged_at           timestamptz, -- auto_delete removed its unselected instances
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX forward_study_state_idx ON rpacs.forward_study (state);

-- Every SOP instance sent (or attempted) to a destination. A SOPInstanceUID is sent once per destination
-- unless forced (times_sent counts the forced re-sends).
CREATE TABLE rpacs.forwarded_instance (
    id                  bigserial PRIMARY KEY,
    sop_instance_uid    text        NOT NULL,
    destination         text        NOT NULL,
    study_instance_uid  text        NOT NULL,
    series_instance_uid text,
    sop_class_uid       text,
    role                text        NOT NULL CHECK (role IN ('dose_object', 'dose_screen', 'sample_image')),
    orthanc_id          text,
    status              text        NOT NULL CHECK (status IN ('sent', 'failed')),
    via                 text        NOT NULL DEFAULT 'c-store' CHECK (via IN ('c-store', 'c-move', 'found')),
    orthanc_job         text,
    error               text,
    times_sent          integer     NOT NULL DEFAULT 0,
    first_sent_at       timestamptz,
    sent_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX forwarded_instance_study_idx ON rpacs.forwarded_instance (study_instance_uid);

-- Selective transfers: only the selected instances moved from the source (straight to the dose PACS or
-- through the research PACS).
CREATE TABLE rpacs.selective_move (
    id                  bigserial PRIMARY KEY,
    study_instance_uid  text        NOT NULL,
    source_node         text        NOT NULL,
    destination         text        NOT NULL,
    ok                  boolean     NOT NULL,
    announced_instances integer,
    selected_instances  integer,
    bytes_moved         bigint,
    seconds             double precision,
    error               text,
    at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX selective_move_study_idx ON rpacs.selective_move (study_instance_uid, at);

-- Studies auto_delete must never touch.
CREATE TABLE rpacs.protected_study (
    study_instance_uid  text PRIMARY KEY,
    reason              text,
    protected_by        text,
    at                  timestamptz NOT NULL DEFAULT now()
);

-- Every instance auto_delete removed from the research PACS.
CREATE TABLE rpacs.deletion_log (
    id                  bigserial PRIMARY KEY,
    study_instance_uid  text        NOT NULL,
    series_instance_uid text,
    sop_instance_uid    text        NOT NULL,
    orthanc_id          text        NOT NULL,
    bytes               bigint,
    reason              text        NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deletion_log_study_idx ON rpacs.deletion_log (study_instance_uid);
