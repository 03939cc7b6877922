-- The physicist's report (issue 19, docs/web.md "Report"): the workload by weekday and hour needs the time of the
-- examination. dose.study.study_time: the StudyTime (0008,0030) of the study's dose objects (the first object's,
-- like the study date), read by the ingest (nmdose/dose/parse.py); NULL when absent or for a study ingested
-- before this migration (until one of its dose objects is ingested again).
ALTER TABLE dose.study ADD COLUMN IF NOT EXISTS study_time time;
