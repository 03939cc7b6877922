-- Dose records extracted on the dose-PACS side (issue 6). Everything is keyed by DICOM UIDs so that ingesting the
-- same object twice is a no-op. Units are normalised: mGy, mGy.cm, MBq, s, mm, kV, mA, kg, m, mSv.
--
-- dose.object holds every ingested object with its parse result (the contract of `nmdose dose parse --json`);
-- the per-study tables below are recomputed from *all* of a study's stored objects with merge_study() each time a
-- new object of the study arrives, in one transaction, so cumulative and "continued" RDSRs never double-count
-- and never lose events.

CREATE TABLE dose.object (
    sop_instance_uid    text PRIMARY KEY,            -- 'sha256:<hash>' when the object has no SOP Instance UID
    study_instance_uid  text,
    series_instance_uid text,
    sop_class_uid       text,
    modality            text,
    kind                text        NOT NULL,        -- ct_rdsr | ct_esr | radiopharmaceutical_rdsr | pet_image | ...
    status              text        NOT NULL CHECK (status IN ('ok', 'not_dose')),
    file_sha256         text        NOT NULL,
    file_path           text,
    source              text        NOT NULL DEFAULT 'cli',  -- cli | conquest | orthanc | ...
    warnings            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    parsed              jsonb       NOT NULL,
    revisions           integer     NOT NULL DEFAULT 1,      -- times the same SOP instance came with other bytes
    times_seen          integer     NOT NULL DEFAULT 1,
    first_seen          timestamptz NOT NULL DEFAULT now(),
    last_seen           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX object_study_idx ON dose.object (study_instance_uid);
CREATE INDEX object_sha256_idx ON dose.object (file_sha256);  -- re-sent files are recognised before parsing

-- One row per study: the merged record and the derived values (docs/dose.md "Derived values").
CREATE TABLE dose.study (
    study_instance_uid          text PRIMARY KEY,
    study_date                  date,
    study_year                  integer,
    study_description           text,
    accession_number            text,
    manufacturer                text,
    model_name                  text,
    station_name                text,
    patient_age_years           double precision,
    patient_sex                 text,
    patient_weight_kg           double precision,
    patient_height_m            double precision,
    ct_source_kind              text,                -- ct_rdsr | ct_esr | ct_dose_screen | NULL
    ct_event_count              integer     NOT NULL DEFAULT 0,
    ct_total_dlp_mgycm          double precision,    -- sum of the merged events' DLP
    ct_reported_total_dlp_mgycm double precision,    -- largest total the reports themselves gave
    ct_effective_dose_msv       double precision,    -- sum of DLP x k per event (ICRP 103 k)
    nm_total_activity_mbq       double precision,
    nm_effective_dose_msv       double precision,    -- sum of activity x coefficient (ICRP 128)
    total_effective_dose_msv    double precision,    -- CT + NM when both are known (PET-CT total)
    activity_per_kg_mbq         double precision,
    derived                     jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- coefficients used and their sources
    sources                     jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- objects and what each was used for
    warnings                    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    object_count                integer     NOT NULL DEFAULT 0,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX study_date_idx ON dose.study (study_date);
CREATE INDEX study_description_year_idx ON dose.study (study_description, study_year);

-- One row per CT irradiation event of a study (TID 10013), unique by Irradiation Event UID within the study.
CREATE TABLE dose.ct_event (
    study_instance_uid            text        NOT NULL REFERENCES dose.study ON DELETE CASCADE,
    event_key                     text        NOT NULL,  -- the Irradiation Event UID, or '#n' when absent
    irradiation_event_uid         text,
    ordinal                       integer     NOT NULL,
    study_date                    date,
    study_year                    integer,
    acquisition_protocol          text,
    target_region                 text,
    target_region_code            text,
    acquisition_type              text,
    ctdivol_mgy                   double precision,
    dlp_mgycm                     double precision,
    phantom                       text,               -- head16 | body32 | NULL
    scanning_length_mm            double precision,
    exposure_time_s               double precision,
    pitch                         double precision,
    nominal_total_collimation_mm  double precision,
    nominal_single_collimation_mm double precision,
    kvp                           double precision,   -- highest kVp of the event's sources
    tube_current_ma               double precision,   -- highest mean tube current of the event's sources
    source_count                  integer,
    sources                       jsonb       NOT NULL DEFAULT '[]'::jsonb,
    dose_check                    jsonb,
    k_msv_per_mgycm               double precision,
    effective_dose_msv            double precision,
    PRIMARY KEY (study_instance_uid, event_key)
);
CREATE INDEX ct_event_protocol_year_idx ON dose.ct_event (acquisition_protocol, study_year);
CREATE INDEX ct_event_region_year_idx ON dose.ct_event (target_region, study_year);
CREATE INDEX ct_event_date_idx ON dose.ct_event (study_date);

-- One row per radiopharmaceutical administration of a study (TID 10022 or PET/NM headers, merged).
CREATE TABLE dose.radiopharmaceutical (
    study_instance_uid            text        NOT NULL REFERENCES dose.study ON DELETE CASCADE,
    administration_key            text        NOT NULL,  -- the administration event UID, or '#n' when absent
    ordinal                       integer     NOT NULL,
    study_date                    date,
    study_year                    integer,
    source                        text        NOT NULL,  -- rrdsr | pet_image | nm_image
    agent                         text,
    agent_code                    text,
    radionuclide                  text,
    radionuclide_code             text,
    activity_mbq                  double precision,
    activity_rule                 text,
    start_datetime                timestamp,             -- wall-clock time as recorded (zone offset dropped)
    stop_datetime                 timestamp,
    half_life_s                   double precision,
    route                         text,
    pre_measured_activity_mbq     double precision,
    post_measured_activity_mbq    double precision,
    header_start_datetime         timestamp,
    header_activity_mbq           double precision,
    injection_time_difference_s   double precision,      -- header minus RRDSR
    activity_at_injection_mbq     double precision,      -- decay-corrected when measured earlier
    activity_per_kg_mbq           double precision,
    coefficient_msv_per_mbq       double precision,
    effective_dose_msv            double precision,
    reported_effective_dose_msv   double precision,      -- as given in the RRDSR (113839), if any
    details                       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (study_instance_uid, administration_key)
);
CREATE INDEX radiopharmaceutical_agent_year_idx ON dose.radiopharmaceutical (agent, study_year);
CREATE INDEX radiopharmaceutical_date_idx ON dose.radiopharmaceutical (study_date);

-- One row per series of a study with its protocol fields (header attributes of the objects received).
CREATE TABLE dose.series_protocol (
    study_instance_uid  text NOT NULL REFERENCES dose.study ON DELETE CASCADE,
    series_instance_uid text NOT NULL,
    modality            text,
    protocol_name       text,
    series_description  text,
    requested_procedure text,
    performed_procedure text,
    body_part           text,
    study_date          date,
    study_year          integer,
    PRIMARY KEY (study_instance_uid, series_instance_uid)
);
CREATE INDEX series_protocol_name_year_idx ON dose.series_protocol (protocol_name, study_year);

-- Files that could not be ingested: kept with their error, never blocking the others.
CREATE TABLE dose.dead_letter (
    id            bigserial PRIMARY KEY,
    key           text        NOT NULL UNIQUE,   -- 'sha256:<hash>' of the bytes, else 'path:<file>'
    file_path     text        NOT NULL,
    file_sha256   text,
    source        text        NOT NULL DEFAULT 'cli',
    error         text        NOT NULL,
    attempts      integer     NOT NULL DEFAULT 1,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz                    -- set when the same bytes are later ingested
);
CREATE INDEX dead_letter_open_idx ON dose.dead_letter (last_seen) WHERE resolved_at IS NULL;
