-- Scanners (issue 16 item 2, docs/dose.md "Scanners"): one row per device, found by its identity
-- (nmdose/dose/scanners.py): the Device Observer UID of its dose reports (TID 1004) when present, else
-- manufacturer + model + serial number, else manufacturer + model + station name. A new software version or a
-- renamed station on the same identity updates the row (the names seen, with the first and last study date of
-- each); it never makes a second scanner. An administrator names each scanner (display_name) and may merge two
-- (merged_into): the statistics group and filter by the scanner a row was merged into, under its display name.
-- dose.study.scanner_id names the row the study's own identity found (the merge is resolved when read), so
-- undoing a merge needs no study to be touched.

CREATE TABLE dose.scanner (
    scanner_id           serial      PRIMARY KEY,
    identity_key         text        NOT NULL UNIQUE,   -- 'uid:…' | 'serial:…' | 'station:…' it was created by
    display_name         text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    manufacturer         text,
    model_name           text,
    device_serial_number text,
    device_observer_uid  text,                           -- the first Device Observer UID seen
    device_observer_uids text[]      NOT NULL DEFAULT '{}',  -- every one seen (some change with an upgrade)
    -- {"<name>": {"first": "YYYY-MM-DD", "last": "YYYY-MM-DD"}}: study dates of the first and last study
    station_names        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    software_versions    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    first_study_date     date,
    last_study_date      date,
    merged_into          integer     REFERENCES dose.scanner ON DELETE SET NULL,
    renamed_by           text,                           -- who set the display name last (NULL: automatic)
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (merged_into IS DISTINCT FROM scanner_id)
);
CREATE INDEX scanner_uids_idx ON dose.scanner USING gin (device_observer_uids);
CREATE INDEX scanner_serial_idx ON dose.scanner (lower(manufacturer), lower(model_name), device_serial_number);
CREATE INDEX scanner_merged_idx ON dose.scanner (merged_into) WHERE merged_into IS NOT NULL;

-- 015 (standard names) and 017 (alerts) add the column too, without a reference: IF NOT EXISTS, then ours.
ALTER TABLE dose.study ADD COLUMN IF NOT EXISTS scanner_id integer;
ALTER TABLE dose.study ADD CONSTRAINT study_scanner_fk FOREIGN KEY (scanner_id) REFERENCES dose.scanner
    ON DELETE SET NULL;
CREATE INDEX study_scanner_idx ON dose.study (scanner_id, study_date);

-- Backfill: the studies ingested before this migration, by the same keys as nmdose.dose.scanners.identity_key
-- (their stored parse results hold no Device Observer UID yet: serial number, else station). Ingesting a study
-- again applies the whole rule.
CREATE TEMP TABLE scanner_backfill ON COMMIT DROP AS
SELECT study_instance_uid, study_date, mf, md, st, sn,
       CASE WHEN mf IS NOT NULL AND md IS NOT NULL AND sn IS NOT NULL
                THEN 'serial:' || lower(mf) || '|' || lower(md) || '|' || sn
            WHEN coalesce(mf, md, st) IS NOT NULL
                THEN 'station:' || lower(coalesce(mf, '')) || '|' || lower(coalesce(md, '')) || '|'
                     || lower(coalesce(st, ''))
       END AS k
  FROM (SELECT s.study_instance_uid, s.study_date, nullif(btrim(s.manufacturer), '') AS mf,
               nullif(btrim(s.model_name), '') AS md, nullif(btrim(s.station_name), '') AS st,
               (SELECT nullif(btrim(o.parsed->>'device_serial_number'), '') FROM dose.object o
                 WHERE o.study_instance_uid = s.study_instance_uid AND o.status = 'ok'
                   AND nullif(btrim(o.parsed->>'device_serial_number'), '') IS NOT NULL
                 ORDER BY o.sop_instance_uid LIMIT 1) AS sn
          FROM dose.study s WHERE s.scanner_id IS NULL) eq;

INSERT INTO dose.scanner (identity_key, display_name, manufacturer, model_name, device_serial_number,
                          station_names, first_study_date, last_study_date)
SELECT b.k,
       left(CASE WHEN coalesce(min(b.md), min(b.mf)) IS NOT NULL
                 THEN coalesce(min(b.md), min(b.mf)) || coalesce(' (' || min(b.st) || ')', '')
                 ELSE coalesce(min(b.st), 'scanner') END, 200),
       min(b.mf), min(b.md), min(b.sn),
       coalesce((SELECT jsonb_object_agg(x.st, jsonb_build_object('first', x.f, 'last', x.l))
                   FROM (SELECT st, min(study_date)::text AS f, max(study_date)::text AS l FROM scanner_backfill
                          WHERE k = b.k AND st IS NOT NULL GROUP BY st) x), '{}'::jsonb),
       min(b.study_date), max(b.study_date)
  FROM scanner_backfill b WHERE b.k IS NOT NULL GROUP BY b.k
ON CONFLICT (identity_key) DO NOTHING;

UPDATE dose.study s SET scanner_id = sc.scanner_id
  FROM scanner_backfill b JOIN dose.scanner sc ON sc.identity_key = b.k
 WHERE s.study_instance_uid = b.study_instance_uid;

-- a rename or merge changes the statistics' groups: the cached answers (web/cache.py) must go
CREATE TRIGGER scanner_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dose.scanner
    FOR EACH STATEMENT EXECUTE FUNCTION dose.data_changed();

-- The web role reads the dose schema and writes only its cache (nmdose.db.roles): renaming and merging go through
-- these two functions (SECURITY DEFINER, owner's rights), which change nothing else. Only roles that may connect
-- to the database (owner, worker, web) can call them; the route checks config:write and the audit trail records it.
CREATE FUNCTION dose.scanner_rename(p_scanner integer, p_name text, p_by text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE n integer;
BEGIN
    UPDATE dose.scanner SET display_name = btrim(p_name), renamed_by = p_by, updated_at = now()
     WHERE scanner_id = p_scanner;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- p_into NULL: undo the merge of p_scanner. Chains are flattened: what was merged into p_scanner follows it.
CREATE FUNCTION dose.scanner_merge(p_scanner integer, p_into integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE target integer;
DECLARE n integer;
BEGIN
    PERFORM 1 FROM dose.scanner WHERE scanner_id IN (p_scanner, p_into) ORDER BY scanner_id FOR UPDATE;
    IF p_into IS NULL THEN
        UPDATE dose.scanner SET merged_into = NULL, updated_at = now() WHERE scanner_id = p_scanner;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    SELECT coalesce(merged_into, scanner_id) INTO target FROM dose.scanner WHERE scanner_id = p_into;
    IF target IS NULL THEN
        RETURN 0;
    END IF;
    IF target = p_scanner THEN
        RAISE EXCEPTION 'scanner % is merged into scanner %: merge the other way', p_into, p_scanner
            USING ERRCODE = '22023';
    END IF;
    UPDATE dose.scanner SET merged_into = target, updated_at = now() WHERE scanner_id = p_scanner;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        UPDATE dose.scanner SET merged_into = target, updated_at = now() WHERE merged_into = p_scanner;
    END IF;
    RETURN n;
END $$;
