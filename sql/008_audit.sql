-- Audit trail (issue 13 item 2): one row per call of a non-public web route, per state-changing command-line
-- action and per automatic action of the plugin. Append-only: UPDATE, DELETE and TRUNCATE fail for every role
-- (the table owner included) except the DELETE that the retention purge, audit.purge(), makes. docs/audit.md.
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.event (
    id               bigserial   PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),   -- when the request or action happened
    source           text        NOT NULL CHECK (source IN ('web', 'cli', 'plugin')),
    actor_subject    text,       -- the token's `sub` (keycloak), NULL in dev mode and for the CLI
    actor_username   text,       -- preferred_username / dev user / OS user of the command line / 'nmdose'
    actor_roles      text[]      NOT NULL DEFAULT '{}',
    client_address   text,       -- the client as far as known: first X-Forwarded-For entry, X-Real-IP, the peer
    peer_address     text,       -- the address that connected to Orthanc (the proxy when there is one)
    forwarded_for    text,       -- X-Forwarded-For / X-Real-IP exactly as received
    action           text        NOT NULL,  -- route pattern ("/api/dose/study/{uid}") or action ("forward purge")
    method           text,       -- HTTP method; NULL for command-line and plugin actions
    path             text,       -- the path as requested (below /nmdose)
    permission       text,       -- the permission the route requires
    params           jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- query and path parameters; never bodies
    study_uids       text[]      NOT NULL DEFAULT '{}',  -- StudyInstanceUIDs concerned (at most audit.max_study_uids)
    study_uids_total integer,    -- how many were concerned (more than study_uids holds when cut)
    rows_returned    integer,    -- rows in the answer (JSON list, CSV lines, XLSX data rows); NULL: not a data answer
    format           text,       -- json | csv | xlsx | html | other
    status           integer,    -- HTTP status; command line: 0 success, non-zero failure
    outcome          text        NOT NULL DEFAULT 'success' CHECK (outcome IN ('success', 'failure', 'denied')),
    detail           jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX event_at_idx ON audit.event (at DESC, id DESC);
CREATE INDEX event_user_idx ON audit.event (actor_username, at DESC);
CREATE INDEX event_action_idx ON audit.event (action, at DESC);
CREATE INDEX event_study_idx ON audit.event USING gin (study_uids);

-- The guard: UPDATE and TRUNCATE always fail; DELETE only inside audit.purge() (the transaction-local setting it
-- sets AND the call stack naming it: a session cannot forge the stack by setting the variable itself).
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stack text;
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('nmdose.audit_purge', true) = 'on' THEN
        GET DIAGNOSTICS stack = PG_CONTEXT;
        IF stack LIKE '%function audit.purge(%' THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit.event is append-only: % refused (only audit.purge() removes rows past the retention)',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER event_no_update BEFORE UPDATE ON audit.event
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER event_no_delete BEFORE DELETE ON audit.event
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON audit.event
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- The retention purge: removes the rows older than `retention_days` and records itself as an audit row.
-- SECURITY DEFINER: the runtime roles call it without holding DELETE on the table. Whoever calls it, it never
-- removes a row younger than 730 days: the Korean safety-measure standard keeps the access records of a system
-- processing sensitive (health) information at least two years (docs/audit.md).
CREATE FUNCTION audit.purge(retention_days integer, by_source text DEFAULT 'cli', by_user text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 730 THEN
        RAISE EXCEPTION 'audit retention must be at least 730 days (2 years), got %', retention_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('nmdose.audit_purge', 'on', true);
    DELETE FROM audit.event WHERE at < now() - make_interval(days => retention_days);
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('nmdose.audit_purge', 'off', true);
    INSERT INTO audit.event (source, actor_username, action, params, rows_returned, status, detail)
    VALUES (by_source, coalesce(by_user, 'nmdose'), 'audit purge',
            jsonb_build_object('retention_days', retention_days), NULL, 0,
            jsonb_build_object('removed', removed,
                               'cutoff', now() - make_interval(days => retention_days)));
    RETURN removed;
END $$;

REVOKE UPDATE, DELETE, TRUNCATE ON audit.event FROM PUBLIC;
-- Runtime roles made by a later migration or by hand get INSERT and SELECT only (docs/audit.md); any other role
-- already holding more on the table loses it here.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
              WHERE rolname LIKE 'nmdose%' AND rolname <> current_user AND NOT rolsuper LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit.event FROM %I', r.rolname);
    END LOOP;
END $$;
