-- Standard names (issue 16 item 1): one name for the same examination however each scanner spells it
-- (`CT Chest`, `CHEST ROUTINE`, `흉부 CT`, `Thorax 1.0 B31f`), so statistics, box plots, reference-level
-- comparisons and exports can be grouped by it (docs/standard_names.md).
--
-- dose.standard_name_rule maps a raw value of one field, matched by its normalised form (nmdose.dose.
-- standard_names.normalise: case, spacing, punctuation, full-width characters, Korean/English variants), to a
-- standard name, for all scanners (scanner_id NULL) or one scanner. The names it gives are kept on the rows
-- (dose.study, dose.ct_event, dose.radiopharmaceutical `.standard_name`), set for every existing row when a rule
-- changes (one UPDATE ... FROM per table) and for each study as it is ingested.

-- helper migration 016 (scanners) creates dose.scanner and fills the column; here only the column, no foreign key
ALTER TABLE dose.study ADD COLUMN IF NOT EXISTS scanner_id integer;

CREATE TABLE dose.standard_name_rule (
    id            bigserial   PRIMARY KEY,
    field         text        NOT NULL CHECK (field IN ('study_description', 'requested_procedure',
                                                        'acquisition_protocol', 'agent')),
    raw_value     text        NOT NULL CHECK (raw_value <> ''),  -- as entered (or as first seen)
    normalised    text        NOT NULL CHECK (normalised <> ''), -- what is matched: normalise(raw_value)
    scanner_id    integer,                                       -- NULL: every scanner
    standard_name text        NOT NULL CHECK (standard_name <> ''),
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- one rule per raw form, field and scope (a scanner's rule beside the all-scanner one is allowed: it wins)
CREATE UNIQUE INDEX standard_name_rule_key_idx
    ON dose.standard_name_rule (field, normalised, coalesce(scanner_id, -1));
CREATE INDEX standard_name_rule_name_idx ON dose.standard_name_rule (standard_name);

-- the names given: the study's (fields in priority order: study description, requested procedure, acquisition
-- protocol, agent), each CT event's (its acquisition protocol's, else its study's) and each administration's
-- (its agent's, else its study's)
ALTER TABLE dose.study ADD COLUMN standard_name text;
ALTER TABLE dose.ct_event ADD COLUMN standard_name text;
ALTER TABLE dose.radiopharmaceutical ADD COLUMN standard_name text;
CREATE INDEX study_standard_name_year_idx ON dose.study (standard_name, study_year);
CREATE INDEX ct_event_standard_name_year_idx ON dose.ct_event (standard_name, study_year);
CREATE INDEX radiopharmaceutical_standard_name_year_idx ON dose.radiopharmaceutical (standard_name, study_year);
