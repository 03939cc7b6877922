-- Web pages (issue 7): what keeps the page API fast on a hospital-sized database. Measured, with EXPLAIN, by
-- bench/pages.py on 1,000,000 census studies and 500,000 CT events.
--
-- Counting a million census studies on every request takes seconds, so the counts the research page and the
-- census/retrieval status show are kept as they change, in append-only tallies: statement-level triggers add one
-- row per changed group and statement (+n, -n), so writers never update a shared row (they never wait for each
-- other nor deadlock on a tally), and every 500 writes one writer folds each group's rows into one. A reader sums
-- a group's rows (`GROUP BY <group> HAVING sum(studies) <> 0`). A tally row commits or rolls back with the change
-- it counts, so the sums are exact in every snapshot.

-- ----- rpacs.study mirrors the state of its retrieval: one row then holds every column the research page
-- groups by, and the tally below needs no join (a join's tally is not exact under concurrent writes).
ALTER TABLE rpacs.study ADD COLUMN retrieval_state text;  -- rpacs.retrieval.state of the study; NULL: none

-- FOR SHARE: a retrieval that a transaction not yet committed is changing (whose trigger cannot see this new
-- study) is read once that transaction has ended, and a change to it waits until this insert has committed.
CREATE FUNCTION rpacs.study_take_retrieval_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.retrieval_state := (SELECT r.state FROM rpacs.retrieval r WHERE r.study_instance_uid = NEW.study_uid
                             FOR SHARE);
    RETURN NEW;
END $$;
CREATE TRIGGER study_retrieval_state BEFORE INSERT ON rpacs.study
    FOR EACH ROW EXECUTE FUNCTION rpacs.study_take_retrieval_state();

CREATE FUNCTION rpacs.retrieval_state_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rpacs.study s SET retrieval_state = n.state
      FROM new_rows n WHERE s.study_uid = n.study_instance_uid AND s.retrieval_state IS DISTINCT FROM n.state;
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.retrieval_state_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rpacs.study s SET retrieval_state = NULL
      FROM old_rows o WHERE s.study_uid = o.study_instance_uid AND s.retrieval_state IS NOT NULL;
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.retrieval_state_clear_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rpacs.study SET retrieval_state = NULL WHERE retrieval_state IS NOT NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER retrieval_state_insert AFTER INSERT ON rpacs.retrieval REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_state_set();
CREATE TRIGGER retrieval_state_update AFTER UPDATE ON rpacs.retrieval REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_state_set();
CREATE TRIGGER retrieval_state_delete AFTER DELETE ON rpacs.retrieval REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_state_clear();
CREATE TRIGGER retrieval_state_truncate AFTER TRUNCATE ON rpacs.retrieval
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_state_clear_all();

UPDATE rpacs.study s SET retrieval_state = r.state FROM rpacs.retrieval r WHERE r.study_instance_uid = s.study_uid;

-- ----- studies per node x year x description x modalities (found, corrected) x target x retrieval state:
-- research/yearly, the census status (totals, per modality) and the census descriptions (counts).
CREATE TABLE rpacs.study_tally (
    source_node          text    NOT NULL,
    study_year           integer,            -- extract(year FROM study_date); NULL: no StudyDate
    description          text    NOT NULL,
    modalities_found     text[]  NOT NULL,
    modalities_corrected text[],
    is_target            boolean NOT NULL,
    retrieval_state      text,
    studies              bigint  NOT NULL    -- +n / -n; a group's count is the sum of its rows
);
CREATE SEQUENCE rpacs.study_tally_writes;

CREATE FUNCTION rpacs.study_tally_fold() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('rpacs.study_tally_writes') % 500 = 0 AND pg_try_advisory_xact_lock(28269, 701) THEN
        WITH folded AS (DELETE FROM rpacs.study_tally RETURNING *)
        INSERT INTO rpacs.study_tally
        SELECT source_node, study_year, description, modalities_found, modalities_corrected, is_target,
               retrieval_state, sum(studies)
          FROM folded GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING sum(studies) <> 0;
    END IF;
END $$;

CREATE FUNCTION rpacs.study_tally_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rpacs.study_tally
    SELECT source_node, extract(year FROM study_date)::int, description, modalities_found, modalities_corrected,
           is_target, retrieval_state, count(*)
      FROM new_rows GROUP BY 1, 2, 3, 4, 5, 6, 7;
    PERFORM rpacs.study_tally_fold();
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.study_tally_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rpacs.study_tally
    SELECT source_node, extract(year FROM study_date)::int, description, modalities_found, modalities_corrected,
           is_target, retrieval_state, sum(n)
      FROM (SELECT source_node, study_date, description, modalities_found, modalities_corrected, is_target,
                   retrieval_state, 1 AS n FROM new_rows
            UNION ALL
            SELECT source_node, study_date, description, modalities_found, modalities_corrected, is_target,
                   retrieval_state, -1 FROM old_rows) changed
     GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING sum(n) <> 0;
    PERFORM rpacs.study_tally_fold();
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.study_tally_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rpacs.study_tally
    SELECT source_node, extract(year FROM study_date)::int, description, modalities_found, modalities_corrected,
           is_target, retrieval_state, -count(*)
      FROM old_rows GROUP BY 1, 2, 3, 4, 5, 6, 7;
    PERFORM rpacs.study_tally_fold();
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.study_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rpacs.study_tally;
    RETURN NULL;
END $$;
CREATE TRIGGER study_tally_insert AFTER INSERT ON rpacs.study REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.study_tally_insert();
CREATE TRIGGER study_tally_update AFTER UPDATE ON rpacs.study REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.study_tally_update();
CREATE TRIGGER study_tally_delete AFTER DELETE ON rpacs.study REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.study_tally_delete();
CREATE TRIGGER study_tally_truncate AFTER TRUNCATE ON rpacs.study
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.study_tally_truncate();

INSERT INTO rpacs.study_tally
SELECT source_node, extract(year FROM study_date)::int, description, modalities_found, modalities_corrected,
       is_target, retrieval_state, count(*)
  FROM rpacs.study GROUP BY 1, 2, 3, 4, 5, 6, 7;

-- ----- retrievals per state with their instances and bytes: the retrieval status.
CREATE TABLE rpacs.retrieval_tally (
    state      text    NOT NULL,
    studies    bigint  NOT NULL,
    instances  bigint  NOT NULL,   -- sum of received_instances
    bytes      numeric NOT NULL    -- sum of bytes_received
);
CREATE SEQUENCE rpacs.retrieval_tally_writes;

CREATE FUNCTION rpacs.retrieval_tally_fold() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('rpacs.retrieval_tally_writes') % 500 = 0 AND pg_try_advisory_xact_lock(28269, 702) THEN
        WITH folded AS (DELETE FROM rpacs.retrieval_tally RETURNING *)
        INSERT INTO rpacs.retrieval_tally
        SELECT state, sum(studies), sum(instances), sum(bytes) FROM folded GROUP BY state
        HAVING sum(studies) <> 0 OR sum(instances) <> 0 OR sum(bytes) <> 0;
    END IF;
END $$;

CREATE FUNCTION rpacs.retrieval_tally_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rpacs.retrieval_tally
    SELECT state, count(*), coalesce(sum(received_instances), 0), coalesce(sum(bytes_received), 0)
      FROM new_rows GROUP BY state;
    PERFORM rpacs.retrieval_tally_fold();
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.retrieval_tally_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rpacs.retrieval_tally
    SELECT state, sum(n), sum(n * coalesce(received_instances, 0)), sum(n * coalesce(bytes_received, 0))
      FROM (SELECT state, received_instances, bytes_received, 1 AS n FROM new_rows
            UNION ALL
            SELECT state, received_instances, bytes_received, -1 FROM old_rows) changed
     GROUP BY state
    HAVING sum(n) <> 0 OR sum(n * coalesce(received_instances, 0)) <> 0 OR sum(n * coalesce(bytes_received, 0)) <> 0;
    PERFORM rpacs.retrieval_tally_fold();
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.retrieval_tally_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rpacs.retrieval_tally
    SELECT state, -count(*), -coalesce(sum(received_instances), 0), -coalesce(sum(bytes_received), 0)
      FROM old_rows GROUP BY state;
    PERFORM rpacs.retrieval_tally_fold();
    RETURN NULL;
END $$;
CREATE FUNCTION rpacs.retrieval_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rpacs.retrieval_tally;
    RETURN NULL;
END $$;
CREATE TRIGGER retrieval_tally_insert AFTER INSERT ON rpacs.retrieval REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_tally_insert();
CREATE TRIGGER retrieval_tally_update AFTER UPDATE ON rpacs.retrieval
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_tally_update();
CREATE TRIGGER retrieval_tally_delete AFTER DELETE ON rpacs.retrieval REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_tally_delete();
CREATE TRIGGER retrieval_tally_truncate AFTER TRUNCATE ON rpacs.retrieval
    FOR EACH STATEMENT EXECUTE FUNCTION rpacs.retrieval_tally_truncate();

INSERT INTO rpacs.retrieval_tally
SELECT state, count(*), coalesce(sum(received_instances), 0), coalesce(sum(bytes_received), 0)
  FROM rpacs.retrieval GROUP BY state;

-- ----- indexes for what the tallies do not hold
-- census descriptions: first and last StudyDate of each (description, modality set), two index probes each
CREATE INDEX study_description_found_date_idx ON rpacs.study (description, modalities_found, study_date);
-- research/corrections: the few corrected studies, read index-only
CREATE INDEX study_corrected_idx ON rpacs.study
    (description, modalities_found, modalities_corrected, correction_reason, study_date)
    WHERE modalities_corrected IS NOT NULL;
-- research/failed: newest failed or partial retrievals
CREATE INDEX retrieval_failed_idx ON rpacs.retrieval (updated_at DESC) WHERE state IN ('failed', 'partial');

-- a study's CTDIvol (the mean of its events' CTDIvol; events without one, e.g. localizers, left out), kept with
-- the study by triggers on dose.ct_event whoever writes the events, so the per-description statistics read one
-- row per study instead of averaging its events per request
ALTER TABLE dose.study ADD COLUMN ct_mean_ctdivol_mgy double precision;

CREATE FUNCTION dose.study_mean_ctdivol_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dose.study s SET ct_mean_ctdivol_mgy = m.mean
      FROM (SELECT c.uid, (SELECT avg(e.ctdivol_mgy) FROM dose.ct_event e WHERE e.study_instance_uid = c.uid) AS mean
              FROM (SELECT study_instance_uid AS uid FROM changed_rows GROUP BY 1) c) m
     WHERE s.study_instance_uid = m.uid AND s.ct_mean_ctdivol_mgy IS DISTINCT FROM m.mean;
    RETURN NULL;
END $$;
CREATE TRIGGER ct_event_mean_insert AFTER INSERT ON dose.ct_event REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dose.study_mean_ctdivol_set();
CREATE TRIGGER ct_event_mean_update AFTER UPDATE ON dose.ct_event REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dose.study_mean_ctdivol_set();
CREATE TRIGGER ct_event_mean_delete AFTER DELETE ON dose.ct_event REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dose.study_mean_ctdivol_set();

UPDATE dose.study s SET ct_mean_ctdivol_mgy = e.mean
  FROM (SELECT study_instance_uid, avg(ctdivol_mgy) AS mean FROM dose.ct_event GROUP BY 1) e
 WHERE e.study_instance_uid = s.study_instance_uid;

-- the study's fields the dose page filters on and reference levels match on (description, patient age, sex and
-- weight, scanner) on each CT event and administration, copied from dose.study by triggers whoever writes the
-- rows: the statistics read one table, with no join to dose.study (measured: the join was most of the time)
ALTER TABLE dose.ct_event
    ADD COLUMN study_description text, ADD COLUMN patient_age_years double precision, ADD COLUMN patient_sex text,
    ADD COLUMN patient_weight_kg double precision, ADD COLUMN manufacturer text, ADD COLUMN model_name text,
    ADD COLUMN station_name text;
ALTER TABLE dose.radiopharmaceutical
    ADD COLUMN study_description text, ADD COLUMN patient_age_years double precision, ADD COLUMN patient_sex text,
    ADD COLUMN patient_weight_kg double precision, ADD COLUMN manufacturer text, ADD COLUMN model_name text,
    ADD COLUMN station_name text;

CREATE FUNCTION dose.take_study_fields() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.study_description, s.patient_age_years, s.patient_sex, s.patient_weight_kg, s.manufacturer,
           s.model_name, s.station_name
      INTO NEW.study_description, NEW.patient_age_years, NEW.patient_sex, NEW.patient_weight_kg, NEW.manufacturer,
           NEW.model_name, NEW.station_name
      FROM dose.study s WHERE s.study_instance_uid = NEW.study_instance_uid;
    RETURN NEW;
END $$;
CREATE TRIGGER ct_event_study_fields BEFORE INSERT OR UPDATE OF study_instance_uid, study_description,
    patient_age_years, patient_sex, patient_weight_kg, manufacturer, model_name, station_name ON dose.ct_event
    FOR EACH ROW EXECUTE FUNCTION dose.take_study_fields();
CREATE TRIGGER radiopharmaceutical_study_fields BEFORE INSERT OR UPDATE OF study_instance_uid, study_description,
    patient_age_years, patient_sex, patient_weight_kg, manufacturer, model_name, station_name
    ON dose.radiopharmaceutical FOR EACH ROW EXECUTE FUNCTION dose.take_study_fields();

CREATE FUNCTION dose.give_study_fields() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the BEFORE UPDATE triggers above then copy the study's new values
    UPDATE dose.ct_event SET study_description = NULL WHERE study_instance_uid = NEW.study_instance_uid;
    UPDATE dose.radiopharmaceutical SET study_description = NULL WHERE study_instance_uid = NEW.study_instance_uid;
    RETURN NULL;
END $$;
CREATE TRIGGER study_fields_to_events AFTER UPDATE OF study_description, patient_age_years, patient_sex,
    patient_weight_kg, manufacturer, model_name, station_name ON dose.study
    FOR EACH ROW WHEN ((OLD.study_description, OLD.patient_age_years, OLD.patient_sex, OLD.patient_weight_kg,
                        OLD.manufacturer, OLD.model_name, OLD.station_name)
                       IS DISTINCT FROM (NEW.study_description, NEW.patient_age_years, NEW.patient_sex,
                                         NEW.patient_weight_kg, NEW.manufacturer, NEW.model_name, NEW.station_name))
    EXECUTE FUNCTION dose.give_study_fields();

UPDATE dose.ct_event SET study_description = NULL;           -- fills every copied field (trigger)
UPDATE dose.radiopharmaceutical SET study_description = NULL;

-- dose filters by date range and by protocol, read index-only (the statistics need these four columns)
CREATE INDEX ct_event_date_stats_idx ON dose.ct_event (study_date)
    INCLUDE (acquisition_protocol, study_instance_uid, ctdivol_mgy, dlp_mgycm);
CREATE INDEX ct_event_protocol_stats_idx ON dose.ct_event (acquisition_protocol, study_date)
    INCLUDE (study_instance_uid, ctdivol_mgy, dlp_mgycm);
-- dose/activity-points: administrations in (study_date, study) order without sorting them all
CREATE INDEX radiopharmaceutical_date_study_idx ON dose.radiopharmaceutical (study_date, study_instance_uid);
-- the two above cover what the single-column date indexes of 003_dose.sql served
DROP INDEX dose.ct_event_date_idx;
DROP INDEX dose.radiopharmaceutical_date_idx;

-- ----- dose statistics: percentiles cannot be kept as running sums, so computed answers are cached per request
-- (route + parameters) with the version of the dose data they were computed from. The version is the sum of an
-- append-only counter that every statement writing a dose table adds to, in its own transaction: an answer
-- computed in one snapshot together with dose.data_version() is exact for that version.
CREATE TABLE dose.data_change (changes bigint NOT NULL);
CREATE SEQUENCE dose.data_change_writes;
INSERT INTO dose.data_change VALUES (0);

CREATE FUNCTION dose.data_version() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(changes), 0)::bigint FROM dose.data_change
$$;

CREATE FUNCTION dose.data_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dose.data_change VALUES (1);
    IF nextval('dose.data_change_writes') % 500 = 0 AND pg_try_advisory_xact_lock(28269, 703) THEN
        WITH folded AS (DELETE FROM dose.data_change RETURNING changes)
        INSERT INTO dose.data_change SELECT sum(changes) FROM folded HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER study_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dose.study
    FOR EACH STATEMENT EXECUTE FUNCTION dose.data_changed();
CREATE TRIGGER ct_event_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dose.ct_event
    FOR EACH STATEMENT EXECUTE FUNCTION dose.data_changed();
CREATE TRIGGER radiopharmaceutical_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON dose.radiopharmaceutical FOR EACH STATEMENT EXECUTE FUNCTION dose.data_changed();
CREATE TRIGGER series_protocol_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dose.series_protocol
    FOR EACH STATEMENT EXECUTE FUNCTION dose.data_changed();

-- One computed JSON answer (nmdose/web/cache.py): `key` names the route and its parameters; valid while
-- data_version = dose.data_version(). Text, not jsonb: the answer is returned byte for byte as computed.
CREATE TABLE dose.web_cache (
    key           text        PRIMARY KEY,
    data_version  bigint      NOT NULL,
    body          text        NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    compute_ms    double precision
);
