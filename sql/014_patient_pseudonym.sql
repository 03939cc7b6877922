-- Patient cumulative dose (issue 16 item 4): a keyed pseudonym of the PatientID on each dose study, so that a
-- physicist can add up a patient's studies without the dose schema holding who the patient is.
-- patient_pseudonym = 'p1:' || first 32 hex digits of HMAC-SHA256(NMDOSE_PSEUDONYM_KEY, PatientID), computed by
-- the ingest (nmdose.secrets.patient_pseudonym); the prefix names the key generation so a key can be rotated.
-- NULL: the objects carry no PatientID, or the study was ingested before this migration (docs/dose.md).
-- The plain PatientID is never stored in schema dose: re-identification goes through the research PACS census
-- (rpacs.study.patient_id), for a role that has patient:reidentify, audited (docs/web.md).
ALTER TABLE dose.study ADD COLUMN patient_pseudonym text;
CREATE INDEX study_patient_pseudonym_idx ON dose.study (patient_pseudonym, study_date)
    WHERE patient_pseudonym IS NOT NULL;
