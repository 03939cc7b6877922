-- Queue leases (issue 14 item 7). A claimed job holds a lease until `lease_until`; the pool of its worker renews
-- it while the job runs (`locked_at` is the last renewal, the heartbeat). A job whose lease expired (its holder was
-- killed or cut off from the database) is taken back by any running pool, the attempt counted, instead of being
-- reset by node-name prefix at start: two instances sharing the database, or the CLI, never re-run each other's
-- live jobs. `lease_token` is the claim's token: completing, failing or deferring a job is fenced by it, so a
-- holder whose lease was taken back changes nothing. A job that used up its attempts stays `failed` (the dead
-- state: it never runs again by itself; `retrieve retry --failed` queues it again).
ALTER TABLE jobs.queue ADD COLUMN lease_until timestamptz;
ALTER TABLE jobs.queue ADD COLUMN lease_token text;

-- Jobs left `running` by a version without leases get one lease length from now to be renewed or taken back.
UPDATE jobs.queue SET lease_until = now() + interval '60 seconds', locked_at = now()
 WHERE state = 'running';

-- The reclaim and the health check look for running jobs past their lease.
CREATE INDEX queue_lease_idx ON jobs.queue (lease_until) WHERE state = 'running';
