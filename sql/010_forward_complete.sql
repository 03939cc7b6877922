-- Forwarding is complete or visibly not (issue 14, item 9). Each forward plan records what it saw, so that a
-- study forwarded before all its instances were in the research PACS is found again: by the start-up
-- reconciliation (the research PACS's study ids and LastUpdate differ from the plan's), by the periodic one
-- (its retrieval changed after the plan), and listed by `nmdose forward pending` until it is complete.
ALTER TABLE rpacs.forward_study
    ADD COLUMN planned_at           timestamptz, -- when the last plan checked that the retrieval was final (DB clock)
    ADD COLUMN research_fingerprint text,        -- Orthanc ids and LastUpdate of the study the last plan saw
    ADD COLUMN research_instances   integer,     -- instances of the study the last plan saw
    ADD COLUMN missing              integer;     -- selected by the last plan and not forwarded (0 once done)

-- Studies forwarded before this migration: their plan began when they started.
UPDATE rpacs.forward_study SET planned_at = coalesce(started_at, finished_at)
 WHERE trigger <> 'selective' AND state IN ('done', 'failed');

-- 'reconcile': queued again by the reconciliation (a retrieval changed after the plan, a lost job or event).
ALTER TABLE rpacs.forward_study DROP CONSTRAINT forward_study_trigger_check;
ALTER TABLE rpacs.forward_study ADD CONSTRAINT forward_study_trigger_check
    CHECK (trigger IN ('stable', 'start', 'manual', 'selective', 'reconcile'));
