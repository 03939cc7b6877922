"""Benchmark: the JSON API behind the web pages on a hospital-sized database (issue 7).

Starts a throw-away PostgreSQL (the local stack's launcher, free port, /tmp), applies the migrations, fills it in
SQL with generate_series (no DICOM): --studies census studies (rpacs.study over 10 years, ~55 descriptions,
retrievals and their queue jobs, one census run) and --events CT irradiation events (dose.study + dose.ct_event:
~40 protocols, 6 scanners, ages/weights/sexes with some NULLs) plus the radiopharmaceutical administrations of
the PET/NM studies among them, then VACUUM ANALYZE. Then times the writes the census, the retrieval workers and
the dose ingest make (the triggers of sql/007_web.sql run on each) and checks the research tallies against a
recount (``tally_exact``).

Every API call the pages make (the research page's routes and the census/retrieval status it polls; each call
the dose page makes on Apply; the study page) is dispatched through the real plugin router
(``Plugin.handle_rest``: parameter parsing, a new connection per request as in the plugin, SQL, JSON encoding),
without filters and with the dose page's typical ones (one year, one protocol, one scanner). One line per call:

    route=... filters=... p50_ms=... p95_ms=... cold_p50_ms=... cold_p95_ms=... rows=...

``p50_ms``/``p95_ms``: repeated requests, as a user clicking through the pages between two ingests makes them
(dose answers then come from the per-version cache, nmdose/web/cache.py). ``cold_*``: the same request right
after a dose write, so the dose answers are computed by PostgreSQL (the baseline the cache is measured
against; the research routes read tallies and are never cached). Goal: p95 < 200 ms.

    .venv/bin/python bench/pages.py [--studies 1000000] [--events 500000] [--requests 20] [--cold 5] [--keep]

``--keep`` leaves the database running for EXPLAIN ANALYZE and prints how to reach and stop it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.scratch import (  # noqa: E402
    relax_checkpoints,
    scratch_postgres,
    stop_audit_writer,
    vacuum_analyze,
)
from bench.lib.timing import p95  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.plugin import Plugin  # noqa: E402
from nmdose.web.dose_views import DEFAULT_VIEWS  # noqa: E402
from tests.support import REPO  # noqa: E402

# StudyDescription, found modalities, target (config/retrieve_options.yaml), kind, agent. Most frequent first
# (a study picks index floor(u^2 * n)).
DESCRIPTIONS = [
    ("CT Chest", "CT", True, "ct", None),
    ("CT Abdomen Pelvis", "CT", True, "ct", None),
    ("PET-CT Whole Body FDG", "CT,PT", True, "petct", "Fluorodeoxyglucose F^18^"),
    ("CT Brain", "CT", True, "ct", None),
    ("NM Whole Body Bone Scan", "NM", True, "nm", "Tc-99m MDP"),
    ("CT Chest Low Dose Screening", "CT", False, "ct", None),
    ("PET-CT Torso FDG", "CT,PT", True, "petct", "Fluorodeoxyglucose F^18^"),
    ("CT Spine Lumbar", "CT", False, "ct", None),
    ("흉부 CT", "CT", False, "ct", None),
    ("NM Myocardial Perfusion SPECT", "NM", True, "nm", "Tc-99m Sestamibi"),
    ("CT Angiography Coronary", "CT", False, "ct", None),
    ("PET-CT PSMA", "CT,PT", True, "petct", "PSMA-1007 F^18^"),
    ("CT Neck", "CT", False, "ct", None),
    ("SPECT-CT Bone", "CT,NM", True, "spectct", "Tc-99m MDP"),
    ("NM Thyroid Scan", "NM", True, "nm", "Tc-99m Pertechnetate"),
    ("CT Sinus", "CT", False, "ct", None),
    ("PET-CT Ga-68 DOTATATE", "CT,PT", True, "petct", "Ga-68 DOTATATE"),
    ("복부 CT", "CT", False, "ct", None),
    ("CT Urography", "CT", False, "ct", None),
    ("PET-CT Brain FDG", "CT,PT", True, "petct", "Fluorodeoxyglucose F^18^"),
    ("전신 PET-CT", "CT,PT", True, "petct", "Fluorodeoxyglucose F^18^"),
    ("NM Renal Scan DTPA", "NM", False, "nm", "Tc-99m DTPA"),
    ("CT Extremity", "CT", False, "ct", None),
    ("Outside CT Import", "CT", False, "ct", None),
    ("CT Enterography", "CT", False, "ct", None),
    ("NM Lung Perfusion", "NM", False, "nm", "Tc-99m MAA"),
    ("CT Temporal Bone", "CT", False, "ct", None),
    ("PET-CT Amyloid", "CT,PT", False, "petct", "Florbetaben F^18^"),
    ("CT Facial Bone", "CT", False, "ct", None),
    ("NM Gastric Emptying", "NM", False, "nm", "Tc-99m Sulfur Colloid"),
    ("CT Guided Biopsy", "CT", False, "ct", None),
    ("NM Renal DMSA", "NM", False, "nm", "Tc-99m DMSA"),
    ("CT Colonography", "CT", False, "ct", None),
    ("PET-CT FDG Cardiac Viability", "CT,PT", False, "petct", "Fluorodeoxyglucose F^18^"),
    ("CT Perfusion Brain", "CT", False, "ct", None),
    ("NM Parathyroid", "NM", False, "nm", "Tc-99m Sestamibi"),
    ("CT Cardiac Calcium Score", "CT", False, "ct", None),
    ("SPECT-CT Parathyroid", "CT,NM", False, "spectct", "Tc-99m Sestamibi"),
    ("NM Sentinel Node", "NM", False, "nm", "Tc-99m Phytate"),
    ("PET Brain FDG", "PT", False, "pet", "Fluorodeoxyglucose F^18^"),
    ("CT Chest (외부영상)", "CT", False, "ct", None),
    ("NM MUGA", "NM", False, "nm", "Tc-99m RBC"),
    ("PET-CT Choline", "CT,PT", False, "petct", "Fluorocholine F^18^"),
    ("NM Brain Perfusion SPECT", "NM", False, "nm", "Tc-99m HMPAO"),
    ("SPECT-CT Octreotide", "CT,NM", False, "spectct", "In-111 Pentetreotide"),
    ("CT Shoulder", "CT", False, "ct", None),
    ("CT Knee", "CT", False, "ct", None),
    ("CT Pelvis Bone", "CT", False, "ct", None),
    ("NM Gallium Scan", "NM", False, "nm", "Ga-67 Citrate"),
    ("CT Dental", "CT", False, "ct", None),
    ("CT Orbit", "CT", False, "ct", None),
    ("CT Aorta Angiography", "CT", False, "ct", None),
    ("NM Salivary Gland", "NM", False, "nm", "Tc-99m Pertechnetate"),
    ("CT Pulmonary Angiography", "CT", False, "ct", None),
    ("NM Meckel Scan", "NM", False, "nm", "Tc-99m Pertechnetate"),
]

# CT acquisition protocols per kind of study: name, target region, phantom, typical CTDIvol (mGy), scan length (cm),
# k (mSv per mGy.cm, ICRP 103). The first of a kind is the most frequent.
PROTOCOLS = {
    "ct": [
        ("Chest routine", "Chest", "body32", 8.0, 35, 0.014),
        ("Abdomen Pelvis routine", "Abdomen", "body32", 11.0, 45, 0.015),
        ("Head routine", "Head", "head16", 55.0, 18, 0.0021),
        ("Chest low dose", "Chest", "body32", 2.0, 35, 0.014),
        ("Abdomen portal venous", "Abdomen", "body32", 12.0, 40, 0.015),
        ("Chest HRCT", "Chest", "body32", 6.0, 30, 0.014),
        ("Lumbar spine", "Spine", "body32", 18.0, 20, 0.015),
        ("Neck routine", "Neck", "body32", 14.0, 22, 0.0059),
        ("Sinus low dose", "Head", "head16", 12.0, 12, 0.0021),
        ("Coronary CTA prospective", "Heart", "body32", 25.0, 14, 0.026),
        ("Abdomen triphasic", "Abdomen", "body32", 13.0, 30, 0.015),
        ("Urography excretory", "Abdomen", "body32", 10.0, 40, 0.015),
        ("Extremity", "Extremity", "body32", 7.0, 25, 0.0008),
        ("Temporal bone", "Head", "head16", 45.0, 6, 0.0021),
        ("Facial bone", "Head", "head16", 25.0, 12, 0.0021),
        ("Biopsy guidance", "Chest", "body32", 10.0, 8, 0.014),
        ("Colonography prone", "Abdomen", "body32", 4.0, 45, 0.015),
        ("Brain perfusion", "Head", "head16", 180.0, 8, 0.0021),
        ("Calcium score", "Heart", "body32", 3.0, 14, 0.026),
        ("Shoulder", "Extremity", "body32", 12.0, 20, 0.0054),
        ("Knee", "Extremity", "body32", 8.0, 20, 0.0008),
        ("Pelvis bone", "Pelvis", "body32", 14.0, 25, 0.015),
        ("Dental", "Head", "head16", 10.0, 8, 0.0021),
        ("Orbit", "Head", "head16", 30.0, 6, 0.0021),
        ("Aorta CTA", "Chest", "body32", 12.0, 60, 0.015),
        ("Pulmonary CTA", "Chest", "body32", 9.0, 35, 0.014),
        ("Enterography", "Abdomen", "body32", 10.0, 40, 0.015),
        ("Chest contrast", "Chest", "body32", 9.0, 35, 0.014),
        ("Whole spine", "Spine", "body32", 16.0, 70, 0.015),
        ("Trauma whole body", "Whole Body", "body32", 15.0, 110, 0.015),
        ("Topogram", None, None, None, 50, None),
    ],
    "petct": [
        ("PET-CT WB CTAC", "Whole Body", "body32", 3.5, 95, 0.015),
        ("PET-CT WB diagnostic", "Whole Body", "body32", 9.0, 95, 0.015),
        ("PET Brain CTAC", "Head", "head16", 20.0, 20, 0.0021),
        ("PET-CT Torso CTAC", "Trunk", "body32", 3.0, 70, 0.015),
        ("Topogram", None, None, None, 100, None),
    ],
    "spectct": [
        ("SPECT-CT low dose", "Trunk", "body32", 2.5, 40, 0.015),
        ("SPECT-CT neck", "Neck", "body32", 4.0, 20, 0.0059),
        ("Topogram", None, None, None, 50, None),
    ],
}

# Effective dose coefficients used for the synthetic rows (mSv/MBq) and typical activity (MBq/kg, or fixed MBq).
AGENTS = {
    "Fluorodeoxyglucose F^18^": (0.019, 3.7, None),
    "PSMA-1007 F^18^": (0.022, 4.0, None),
    "Ga-68 DOTATATE": (0.021, 2.0, None),
    "Florbetaben F^18^": (0.019, None, 300),
    "Fluorocholine F^18^": (0.020, 3.0, None),
    "Tc-99m MDP": (0.0049, None, 740),
    "Tc-99m Sestamibi": (0.0079, None, 925),
    "Tc-99m Pertechnetate": (0.013, None, 185),
    "Tc-99m DTPA": (0.0049, None, 370),
    "Tc-99m MAA": (0.011, None, 150),
    "Tc-99m Sulfur Colloid": (0.0094, None, 37),
    "Tc-99m DMSA": (0.0088, None, 110),
    "Tc-99m Phytate": (0.0094, None, 37),
    "Tc-99m RBC": (0.0070, None, 740),
    "Tc-99m HMPAO": (0.0093, None, 740),
    "In-111 Pentetreotide": (0.054, None, 220),
    "Ga-67 Citrate": (0.10, None, 150),
}

START, DAYS = "2015-07-01", 3653  # ten years of studies, more of them towards the end
YEAR = ("2024-01-01", "2024-12-31")


def _values(rows: list[tuple]) -> str:
    """A VALUES list of literals for the small catalogue tables (bench constants, no user input)."""

    def lit(v) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return "'" + str(v).replace("'", "''") + "'"

    return ",\n".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows)


def fill(conn, n_studies: int, n_events: int, source_node: str) -> dict[str, float]:
    """Fill the census, retrieval, queue and dose tables in SQL; returns seconds per step."""
    protos = [(k, i, *p) for k, ps in PROTOCOLS.items() for i, p in enumerate(ps)]
    agents = [(name, *v) for name, v in AGENTS.items()]
    descs = [(i, d, "{" + m + "}", t, k, a) for i, (d, m, t, k, a) in enumerate(DESCRIPTIONS)]
    steps: list[tuple[str, str]] = [
        (
            "catalogues",
            f"""
-- u(key, k): a uniform number in [0, 1) derived from a key, so the fill is the same on every run
CREATE FUNCTION pg_temp.u(key text, k int) RETURNS float8 LANGUAGE sql IMMUTABLE
    AS $$ SELECT (hashtextextended(key, k) & 2147483647)::float8 / 2147483648 $$;
-- z(key, k): a standard normal number (Box-Muller)
CREATE FUNCTION pg_temp.z(key text, k int) RETURNS float8 LANGUAGE sql IMMUTABLE
    AS $$ SELECT sqrt(-2 * ln(1 - pg_temp.u(key, k))) * cos(2 * pi() * pg_temp.u(key, k + 1000)) $$;
CREATE TEMP TABLE b_desc (id int, description text, modalities text[], is_target bool, kind text, agent text);
INSERT INTO b_desc VALUES {_values(descs)};
CREATE TEMP TABLE b_proto (kind text, idx int, name text, region text, phantom text, ctdivol float8,
                           length_cm float8, k float8);
INSERT INTO b_proto VALUES {_values(protos)};
CREATE TEMP TABLE b_kind AS SELECT kind, count(*)::int AS n FROM b_proto GROUP BY kind;
CREATE TEMP TABLE b_agent (agent text, coefficient float8, per_kg float8, fixed_mbq float8);
INSERT INTO b_agent VALUES {_values(agents)};
INSERT INTO rpacs.description_rule (description, is_target, source)
     SELECT description, true, 'config' FROM b_desc WHERE is_target;
""",
        ),
        (
            "census",
            f"""
INSERT INTO rpacs.census_run (id, source_node, state, date_to, earliest_date, resume_from, modality_matching,
                              requests, studies_seen, studies_new, started_by, finished_at)
VALUES (1, %(node)s, 'done', date '{START}' + {DAYS} - 1, date '{START}', date '{START}' + {DAYS}, 'filter',
        {DAYS}, %(n)s, %(n)s, 'bench', now());
INSERT INTO rpacs.census_query (run_id, purpose, date_from, date_to, modalities, status, answers, seconds)
     SELECT 1, 'range', date '{START}' + d, date '{START}' + d, NULL, 'complete', %(n)s / {DAYS}, 0.2
       FROM generate_series(0, {DAYS} - 1) d;
CREATE TEMP TABLE b_study AS
SELECT uid AS study_uid, %(node)s::text AS source_node,
       date '{START}' + floor(sqrt(pg_temp.u(uid, 1)) * {DAYS})::int AS study_date,
       lpad((7 + floor(pg_temp.u(uid, 2) * 11))::int::text, 2, '0') || '3015' AS study_time,
       c.description,
       CASE WHEN wrong THEN '{{CT}}'::text[]
            WHEN c.kind = 'petct' AND pg_temp.u(uid, 4) < 0.3 THEN c.modalities || '{{SR}}'::text[]
            ELSE c.modalities END AS modalities_found,
       CASE WHEN wrong THEN c.modalities END AS modalities_corrected,
       CASE WHEN wrong THEN 'ModalitiesInStudy CT lacks or adds image modalities for ' || quote_literal(c.description)
                            || ' (modality_rules)' END AS correction_reason,
       'A' || i AS accession_number, 'P' || (hashtext(uid) & 2147483647) %% greatest(%(n)s * 6 / 10, 1) AS patient_id,
       2 + floor(pg_temp.u(uid, 5) * 6)::int AS series_count, 50 + floor(pg_temp.u(uid, 6) * 900)::int AS instance_count,
       c.is_target
  FROM (SELECT i, '1.2.826.0.1.3680043.10.543.' || i AS uid FROM generate_series(1, %(n)s) i) g
  JOIN b_desc c ON c.id = floor(pg_temp.u(uid, 3) ^ 2 * (SELECT count(*) FROM b_desc))::int
 CROSS JOIN LATERAL (SELECT c.kind IN ('petct', 'spectct') AND pg_temp.u(uid, 7) < 0.03 AS wrong) w;
""",
        ),
        (
            "retrieval",
            f"""
INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state, attempts, backend, expected_instances,
                             received_instances, bytes_received, last_error, log_path, finished_at, updated_at)
SELECT study_uid, source_node, state, CASE WHEN state = 'done' THEN 1 ELSE 5 END, 'orthanc', instance_count,
       CASE WHEN state IN ('done', 'partial') THEN instance_count - (state = 'partial')::int END,
       CASE WHEN state IN ('done', 'partial') THEN instance_count::bigint * 520000 END,
       CASE WHEN state IN ('failed', 'partial') THEN 'C-MOVE failed: 0xA702 out of resources (attempt 5)' END,
       CASE WHEN state IN ('failed', 'partial') THEN '/var/log/nmdose/retrieve/' || study_uid || '.log' END,
       CASE WHEN state <> 'pending' THEN study_date + time '20:00' END,
       study_date + time '20:00' + make_interval(secs => pg_temp.u(study_uid, 9) * 3600)
  FROM (SELECT s.*, CASE WHEN s.study_date > date '{START}' + {DAYS} - 10 THEN 'pending'
                         WHEN pg_temp.u(s.study_uid, 8) < 0.006 THEN 'failed'
                         WHEN pg_temp.u(s.study_uid, 8) < 0.008 THEN 'partial'
                         WHEN pg_temp.u(s.study_uid, 8) < 0.012 THEN 'pending'
                         ELSE 'done' END AS state
          FROM b_study s WHERE s.is_target) t;
INSERT INTO jobs.queue (kind, key, state, attempts, finished_at)
SELECT 'retrieve', study_instance_uid,
       CASE state WHEN 'pending' THEN 'pending' WHEN 'done' THEN 'done' ELSE 'failed' END,
       attempts, finished_at
  FROM rpacs.retrieval;
INSERT INTO jobs.queue (kind, key, state, attempts, finished_at)
SELECT 'forward', study_instance_uid, 'done', 1, finished_at FROM rpacs.retrieval WHERE state = 'done';
""",
        ),
        (
            "study",
            """
-- after the retrievals, as a census that finds studies already retrieved (the same rows either way)
INSERT INTO rpacs.study (study_uid, source_node, study_date, study_time, description, modalities_found,
                         modalities_corrected, correction_reason, accession_number, patient_id, series_count,
                         instance_count, is_target, first_run_id, last_run_id)
SELECT study_uid, source_node, study_date, study_time, description, modalities_found, modalities_corrected,
       correction_reason, accession_number, patient_id, series_count, instance_count, is_target, 1, 1
  FROM b_study;
""",
        ),
        (
            "dose_study",
            """
-- The dose PACS holds the retrieved studies, in a random order until --events CT events are reached
-- (2.5 events per CT study on average); PET and NM studies in between come too.
CREATE TEMP TABLE b_dose AS
WITH cand AS (
    SELECT s.study_uid AS uid, s.study_date, s.description, s.accession_number, c.kind, c.agent,
           c.kind IN ('ct', 'petct', 'spectct') AS has_ct,
           count(*) FILTER (WHERE c.kind IN ('ct', 'petct', 'spectct')) OVER (ORDER BY hashtext(s.study_uid), s.study_uid) AS ct_rank
      FROM rpacs.study s JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid AND r.state = 'done'
      JOIN b_desc c ON c.description = s.description)
SELECT cand.*,
       CASE WHEN has_ct THEN 1 + floor(pg_temp.u(uid, 20) * 4)::int ELSE 0 END AS events,
       CASE WHEN pg_temp.u(uid, 21) < 0.02 THEN NULL
            ELSE least(99, greatest(0, 58 + 17 * pg_temp.z(uid, 22))) END AS age,
       CASE WHEN pg_temp.u(uid, 23) < 0.015 THEN NULL WHEN pg_temp.u(uid, 23) < 0.02 THEN 'O'
            WHEN pg_temp.u(uid, 23) < 0.51 THEN 'M' ELSE 'F' END AS sex,
       CASE WHEN pg_temp.u(uid, 24) < 0.06 THEN NULL
            ELSE round(least(180, greatest(3, 64 + 13 * pg_temp.z(uid, 25)))::numeric, 1)::float8 END AS weight,
       CASE WHEN pg_temp.u(uid, 26) < 0.3 THEN NULL
            ELSE round(least(2.0, greatest(0.5, 1.65 + 0.09 * pg_temp.z(uid, 27)))::numeric, 2)::float8 END AS height,
       pg_temp.u(uid, 28) AS scanner_u
  FROM cand WHERE ct_rank < %(ct_studies)s OR (ct_rank = %(ct_studies)s AND has_ct);
CREATE TEMP TABLE b_event AS
SELECT d.uid, o AS ordinal, d.study_date, p.*,
       CASE WHEN p.ctdivol IS NULL THEN NULL
            ELSE round((p.ctdivol * exp(0.35 * pg_temp.z(d.uid || o, 30))
                        * (1 - 0.025 * (extract(year FROM d.study_date) - 2015)))::numeric, 2)::float8 END AS ctdi,
       p.length_cm * exp(0.15 * pg_temp.z(d.uid || o, 32)) AS len,
       (ARRAY[80, 100, 120, 120, 120, 140])[1 + floor(pg_temp.u(d.uid || o, 34) * 6)::int] AS kvp,
       round((80 + 300 * pg_temp.u(d.uid || o, 35))::numeric)::float8 AS ma
  FROM b_dose d CROSS JOIN LATERAL generate_series(1, d.events) o
  JOIN b_kind k ON k.kind = d.kind
  JOIN b_proto p ON p.kind = d.kind
                AND p.idx = CASE WHEN d.kind <> 'ct' AND o = 1 THEN k.n - 1     -- the PET/SPECT topogram
                                 WHEN pg_temp.u(d.uid || o, 33) < 0.01 THEN k.n - 1
                                 WHEN d.kind = 'ct' THEN floor(pg_temp.u(d.uid || o, 31) ^ 2 * (k.n - 1))::int
                                 ELSE floor(pg_temp.u(d.uid || o, 31) ^ 2 * greatest(k.n - 1, 1))::int %% k.n END;
CREATE TEMP TABLE b_admin AS
SELECT d.uid, d.study_date, d.agent, a.coefficient,
       round((coalesce(a.per_kg * coalesce(d.weight, 64), a.fixed_mbq)
              * exp(0.12 * pg_temp.z(d.uid, 40)))::numeric, 1)::float8 AS mbq,
       d.weight
  FROM b_dose d JOIN b_agent a USING (agent) WHERE d.kind <> 'ct';
INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description, accession_number,
                        manufacturer, model_name, station_name, patient_age_years, patient_sex, patient_weight_kg,
                        patient_height_m, ct_source_kind, ct_event_count, ct_total_dlp_mgycm,
                        ct_reported_total_dlp_mgycm, ct_effective_dose_msv, nm_total_activity_mbq,
                        nm_effective_dose_msv, total_effective_dose_msv, activity_per_kg_mbq, object_count)
SELECT d.uid, d.study_date, extract(year FROM d.study_date)::int, d.description, d.accession_number,
       sc.manufacturer, sc.model, CASE WHEN pg_temp.u(d.uid, 29) < 0.01 THEN NULL ELSE sc.station END,
       d.age, d.sex, d.weight, d.height,
       CASE WHEN NOT d.has_ct THEN NULL WHEN pg_temp.u(d.uid, 41) < 0.05 THEN 'ct_dose_screen' ELSE 'ct_rdsr' END,
       coalesce(e.n, 0), e.dlp, e.dlp, e.edose, a.mbq, a.edose, e.edose + a.edose,
       a.mbq / d.weight, 1 + (a.mbq IS NOT NULL)::int
  FROM b_dose d
  LEFT JOIN (SELECT uid, count(*)::int AS n, sum(ctdi * len) AS dlp, sum(ctdi * len * k) AS edose
               FROM b_event GROUP BY uid) e USING (uid)
  LEFT JOIN (SELECT uid, sum(mbq) AS mbq, sum(mbq * coefficient) AS edose FROM b_admin GROUP BY uid) a
       USING (uid)
 CROSS JOIN LATERAL (
       SELECT s.station, s.manufacturer, s.model FROM (VALUES
           ('CT1', 'SIEMENS', 'SOMATOM Force'), ('CT2', 'Canon Medical Systems', 'Aquilion ONE'),
           ('CT3', 'Philips', 'Brilliance 64'), ('PETCT1', 'SIEMENS', 'Biograph Vision 600'),
           ('PETCT2', 'GE MEDICAL SYSTEMS', 'Discovery MI'), ('SPECT1', 'SIEMENS', 'Symbia Intevo')
       ) s(station, manufacturer, model)
        WHERE s.station = CASE
            WHEN d.kind = 'ct' AND d.study_date < date '2020-01-01' AND d.scanner_u < 0.20 THEN 'CT3'
            WHEN d.kind = 'ct' AND d.scanner_u < 0.56 THEN 'CT1'
            WHEN d.kind = 'ct' THEN 'CT2'
            WHEN d.kind IN ('petct', 'pet') AND d.scanner_u < 0.6 THEN 'PETCT1'
            WHEN d.kind IN ('petct', 'pet') THEN 'PETCT2'
            ELSE 'SPECT1' END) sc;
""",
        ),
        (
            "dose_events",
            """
INSERT INTO dose.ct_event (study_instance_uid, event_key, irradiation_event_uid, ordinal, study_date,
                           study_year, acquisition_protocol, target_region, acquisition_type, ctdivol_mgy,
                           dlp_mgycm, phantom, scanning_length_mm, exposure_time_s, pitch,
                           nominal_total_collimation_mm, nominal_single_collimation_mm, kvp, tube_current_ma,
                           source_count, k_msv_per_mgycm, effective_dose_msv)
SELECT uid, uid || '.' || ordinal, uid || '.' || ordinal, ordinal, study_date,
       extract(year FROM study_date)::int,
       CASE WHEN pg_temp.u(uid || ordinal, 36) < 0.005 THEN NULL ELSE name END, region,
       CASE WHEN ctdivol IS NULL THEN 'Constant Angle Acquisition' ELSE 'Spiral Acquisition' END,
       ctdi, round((ctdi * len)::numeric, 1)::float8, phantom, round((len * 10)::numeric)::float8,
       round((len / 4)::numeric, 2)::float8, 0.8, 40, 0.625, kvp, ma, 1, k, ctdi * len * k
  FROM b_event;
INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal, study_date, study_year,
                                      source, agent, radionuclide, activity_mbq, activity_rule, route,
                                      activity_per_kg_mbq, coefficient_msv_per_mbq, effective_dose_msv)
SELECT uid, '#1', 1, study_date, extract(year FROM study_date)::int,
       CASE WHEN pg_temp.u(uid, 42) < 0.7 THEN 'rrdsr' ELSE 'pet_image' END, agent,
       split_part(agent, ' ', 1), mbq, 'administered', 'Intravenous route', mbq / weight, coefficient,
       mbq * coefficient
  FROM b_admin;
INSERT INTO dose.object (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, modality,
                         kind, status, file_sha256, source, parsed)
SELECT uid || '.9.1', uid, uid || '.9', '1.2.840.10008.5.1.4.1.1.88.67', 'SR',
       CASE WHEN nm_total_activity_mbq IS NOT NULL AND ct_event_count = 0 THEN 'radiopharmaceutical_rdsr'
            ELSE 'ct_rdsr' END,
       'ok', md5(uid), 'orthanc', '{}'
  FROM dose.study s(uid);
""",
        ),
        (
            "scanners",  # one scanner per station (docs/dose.md "Scanners"), as the ingest's identity rule finds them
            """
INSERT INTO dose.scanner (identity_key, display_name, manufacturer, model_name, device_serial_number,
                          station_names, first_study_date, last_study_date)
SELECT 'serial:' || lower(manufacturer) || '|' || lower(model_name) || '|SN-' || station_name,
       model_name || ' (' || station_name || ')', manufacturer, model_name, 'SN-' || station_name,
       jsonb_build_object(station_name, jsonb_build_object('first', min(study_date)::text,
                                                           'last', max(study_date)::text)),
       min(study_date), max(study_date)
  FROM dose.study WHERE station_name IS NOT NULL GROUP BY manufacturer, model_name, station_name;
UPDATE dose.study s SET scanner_id = sc.scanner_id
  FROM dose.scanner sc WHERE sc.device_serial_number = 'SN-' || s.station_name;
""",
        ),
    ]
    params = {"n": n_studies, "node": source_node, "ct_studies": max(1, round(n_events / 2.5))}
    seconds: dict[str, float] = {}
    with conn.cursor() as cur:
        cur.execute("SET work_mem = '256MB'; SET maintenance_work_mem = '512MB'")  # this session only
        for name, sql in steps:
            start = time.perf_counter()
            cur.execute(sql, params)
            seconds[f"fill_{name}_s"] = time.perf_counter() - start
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("RESET work_mem; RESET maintenance_work_mem")
    conn.commit()
    return seconds


def counts(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT (SELECT count(*) FROM rpacs.study), (SELECT count(*) FROM rpacs.retrieval),
                      (SELECT count(*) FROM jobs.queue), (SELECT count(*) FROM dose.study),
                      (SELECT count(*) FROM dose.ct_event), (SELECT count(*) FROM dose.radiopharmaceutical),
                      pg_database_size(current_database()) / 1048576"""
        )
        row = cur.fetchone()
    conn.rollback()
    names = [
        "studies",
        "retrievals",
        "jobs",
        "dose_studies",
        "ct_events",
        "radiopharmaceuticals",
        "db_size_mb",
    ]
    return dict(zip(names, row, strict=True))


# ----- writes as the census, the retrieval workers and the dose ingest make them, timed (the triggers of
# sql/007_web.sql run on every one); the tallies must then still equal a recount.


def exercise_writes(conn, source_node: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT study_instance_uid FROM rpacs.retrieval WHERE state = 'pending' ORDER BY 1 LIMIT 100"
        )
        pending = [r[0] for r in cur.fetchall()]
        start = time.perf_counter()
        for uid in pending:  # a retrieval worker: moving, then done, one committed update each
            cur.execute("UPDATE rpacs.retrieval SET state = 'moving', updated_at = now() WHERE study_instance_uid = %s",
                        (uid,))  # fmt: skip
            conn.commit()
            cur.execute(
                """UPDATE rpacs.retrieval SET state = 'done', received_instances = expected_instances,
                          bytes_received = expected_instances * 520000::bigint, updated_at = now()
                    WHERE study_instance_uid = %s""",
                (uid,),
            )
            conn.commit()
        out["write_retrieval_update_ms"] = (time.perf_counter() - start) * 1000 / max(1, 2 * len(pending))
        start = time.perf_counter()
        for batch in range(10):  # the census: 100 new studies per INSERT (execute_values' page)
            cur.execute(
                """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                                            patient_id, is_target, first_run_id, last_run_id)
                   SELECT '1.2.826.0.1.3680043.10.544.' || (%s * 100 + i), %s, date '2025-06-30' - i %% 20,
                          CASE WHEN i %% 3 = 0 THEN 'CT Chest' ELSE 'CT Sinus' END, '{CT}', 'P' || i, i %% 3 = 0, 1, 1
                     FROM generate_series(1, 100) i ON CONFLICT (study_uid) DO NOTHING""",
                (batch, source_node),
            )
            conn.commit()
        out["write_census_insert_100_ms"] = (time.perf_counter() - start) * 1000 / 10
        cur.execute("SELECT study_uid FROM rpacs.study ORDER BY study_date DESC, study_uid LIMIT 2500")
        recent = [r[0] for r in cur.fetchall()]
        start = time.perf_counter()
        for k in range(5):  # the census touching the studies it saw again
            cur.execute("UPDATE rpacs.study SET last_seen = now(), last_run_id = 1 WHERE study_uid = ANY(%s)",
                        (recent[k * 500 : (k + 1) * 500],))  # fmt: skip
            conn.commit()
        out["write_census_touch_500_ms"] = (time.perf_counter() - start) * 1000 / 5
        # changes found by a census, corrections, deletions, retrieval retried or removed
        cur.execute("UPDATE rpacs.study SET description = 'CT Chest (changed)' WHERE study_uid = ANY(%s)",
                    (recent[:50],))  # fmt: skip
        cur.execute(
            """UPDATE rpacs.study SET modalities_corrected = '{CT,PT}', correction_reason = 'bench'
                WHERE study_uid = ANY(%s)""",
            (recent[50:100],),
        )
        cur.execute("DELETE FROM rpacs.study WHERE study_uid = ANY(%s)", (recent[100:120],))
        cur.execute(
            "UPDATE rpacs.retrieval SET state = 'pending' WHERE study_instance_uid = ANY(%s)", (pending[:10],)
        )
        cur.execute("DELETE FROM rpacs.retrieval WHERE study_instance_uid = ANY(%s)", (pending[10:20],))
        conn.commit()
        cur.execute("SELECT study_instance_uid FROM dose.study ORDER BY 1 LIMIT 100")
        dose_uids = [r[0] for r in cur.fetchall()]
        start = time.perf_counter()
        for uid in dose_uids:  # the dose ingest rewrites a study in its own transaction
            cur.execute("UPDATE dose.study SET updated_at = now() WHERE study_instance_uid = %s", (uid,))
            cur.execute("UPDATE dose.ct_event SET kvp = kvp WHERE study_instance_uid = %s", (uid,))
            conn.commit()
        out["write_dose_study_ms"] = (time.perf_counter() - start) * 1000 / max(1, len(dose_uids))
        # the research tallies must equal a recount after all these writes
        group = "s.source_node, extract(year FROM s.study_date)::int, s.description, s.modalities_found, s.modalities_corrected, s.is_target"  # fmt: skip
        cur.execute(
            f"""WITH recount AS (SELECT {group}, r.state, count(*) AS n
                                  FROM rpacs.study s LEFT JOIN rpacs.retrieval r ON r.study_instance_uid = s.study_uid
                                 GROUP BY 1, 2, 3, 4, 5, 6, 7),
                     tally AS (SELECT source_node, study_year, description, modalities_found, modalities_corrected,
                                      is_target, retrieval_state, sum(studies) AS n
                                 FROM rpacs.study_tally GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING sum(studies) <> 0),
                     rrecount AS (SELECT state, count(*) AS n, coalesce(sum(received_instances), 0) AS i,
                                         coalesce(sum(bytes_received), 0) AS b FROM rpacs.retrieval GROUP BY 1),
                     rtally AS (SELECT state, sum(studies) AS n, sum(instances) AS i, sum(bytes) AS b
                                  FROM rpacs.retrieval_tally GROUP BY 1 HAVING sum(studies) <> 0)
               SELECT (SELECT count(*) FROM ((TABLE recount EXCEPT TABLE tally) UNION ALL
                                             (TABLE tally EXCEPT TABLE recount)) d),
                      (SELECT count(*) FROM ((TABLE rrecount EXCEPT TABLE rtally) UNION ALL
                                             (TABLE rtally EXCEPT TABLE rrecount)) d)"""  # fmt: skip
        )
        study_diff, retrieval_diff = cur.fetchone()
        out["tally_exact"] = str(study_diff == 0 and retrieval_diff == 0).lower()
    conn.rollback()
    return out


# ----- the API calls the pages make


def cases(conn) -> list[tuple[str, dict[str, str], str]]:
    """(path, query, fixed part of the query): every API call the pages make, without and with typical filters."""
    with conn.cursor() as cur:
        cur.execute("SELECT study_instance_uid FROM dose.study ORDER BY hashtext(study_instance_uid) LIMIT 1")
        uid = cur.fetchone()[0]
    conn.rollback()
    year = {"from": YEAR[0], "to": YEAR[1]}
    out: list[tuple[str, dict[str, str], str]] = [
        ("/api/research/yearly", {}, ""),
        ("/api/research/yearly", {"from_year": YEAR[0][:4], "to_year": YEAR[0][:4]}, ""),
        ("/api/research/grid", {}, ""),
        ("/api/research/grid", {"format": "csv"}, "format=csv"),
        ("/api/research/descriptions/new", {}, ""),
        ("/api/research/corrections", {}, ""),
        ("/api/research/failed", {}, ""),
        ("/census/status", {}, ""),
        ("/retrieve/status", {}, ""),
        ("/api/dose/reference-levels", {}, ""),
        ("/api/dose/dead-letter", {}, ""),
    ]
    # What the dose page asks on Apply: its opening views, from the one list (nmdose.web.dose_views.DEFAULT_VIEWS,
    # which the dose worker warms after each ingest); route ct_protocols is GET /api/dose/ct-protocols, and so on.
    dose_calls = [
        ("/api/dose/" + route.replace("_", "-"), {k: str(v) for k, v in fixed.items()})
        for route, fixed in DEFAULT_VIEWS
    ]
    for path, fixed in dose_calls:
        nm = fixed.get("measure") in ("activity", "per_kg") or "activity" in path
        protocol, station = ("PET-CT WB CTAC", "PETCT1") if nm else ("Chest routine", "CT1")
        for f in ({}, year, {"protocol": protocol}, {"station": station}):
            out.append((path, {**fixed, **f}, urlencode(fixed)))
    # the scanners page (issue 16 item 2, issue 19): the list, side by side per measure, the dose filter by scanner
    out += [
        ("/api/scanners", {}, ""),
        ("/api/scanners/side-by-side", {"measure": "ctdivol"}, "measure=ctdivol"),
        ("/api/scanners/side-by-side", {"measure": "ctdivol", "protocol": "Chest"}, "measure=ctdivol"),
        ("/api/scanners/side-by-side", {"measure": "dlp", **year}, "measure=dlp"),
        ("/api/scanners/side-by-side", {"measure": "activity"}, "measure=activity"),
        ("/api/dose/ct-protocols", {"group": "protocol", "scanner": "1"}, "group=protocol"),
        ("/api/dose/box", {"measure": "ctdivol", "group": "protocol", "scanner": "1"}, "measure=ctdivol"),
    ]
    # standard names, alerts and patient cumulative dose (issue 16 items 1, 3, 4)
    out += [
        ("/api/names/rules", {}, ""),
        ("/api/names/in-use", {}, ""),
        ("/api/names/suggestions", {}, ""),
        ("/api/alerts/firings", {}, ""),
        ("/api/alerts/rules", {}, ""),
        # the outlier worklist's acknowledged rows and all rows (the default, not yet acknowledged, is above)
        ("/api/dose/outliers", {"limit": "50", "acknowledged": "yes"}, "acknowledged=yes"),
        ("/api/dose/outliers", {"limit": "50", "acknowledged": "all"}, "acknowledged=all"),
        ("/api/dose/outliers/ack-history", {}, ""),  # the acknowledgements' history (empty here: none given)
        ("/api/dose/patients", {}, ""),
        ("/api/dose/patients", {"window_years": "5"}, "window_years=5"),
    ]
    # the report page (issue 19): the comparison per group x scanner x year, trends, histograms, workload, annual
    out += [
        ("/api/dose/report/levels", {}, ""),
        ("/api/dose/report/levels", year, ""),
        ("/api/dose/report/levels", {"measure": "dlp", "group": "description"}, "measure=dlp"),
        ("/api/dose/report/levels", {"measure": "activity"}, "measure=activity"),
        ("/api/dose/report/levels", {"group": "age_band"}, "group=age_band"),
        ("/api/dose/report/trends", {}, ""),
        ("/api/dose/report/trends", {"measure": "ctdivol", "period": "quarter"}, "period=quarter"),
        ("/api/dose/report/histogram", {}, ""),
        ("/api/dose/report/histogram", {"measure": "activity"}, "measure=activity"),
        ("/api/dose/report/workload", {}, ""),
        ("/api/dose/report/annual", {"year": YEAR[0][:4]}, "year"),
        ("/api/dose/report/patient-size", {}, ""),
        ("/api/dose/report/patient-size", {"group": "standard_name"}, "group=standard_name"),
    ]
    out.append(("/api/dose/ct-events", {"format": "csv", **year, "station": "CT1"}, "format=csv"))
    out.append((f"/api/dose/study/{uid}", {}, ""))
    return out


def rows_of(body: bytes, content_type: str) -> int:
    if content_type.startswith("text/csv"):
        return body.count(b"\r\n") - 1
    data = json.loads(body)
    if isinstance(data, dict) and "count" in data:
        return data["count"]
    if isinstance(data, dict) and "ct_events" in data:
        return len(data["ct_events"]) + len(data["radiopharmaceuticals"]) + len(data["objects"])
    return len(data) if isinstance(data, list) else 1


def dose_write(cfg, uid: str) -> None:
    """A committed dose write (as an ingest makes): every cached dose answer is then out of date."""
    with closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE dose.study SET updated_at = now() WHERE study_instance_uid = %s", (uid,))
        conn.commit()


def time_routes(plugin: Plugin, calls, n: int, n_cold: int, budget_s: float) -> list[dict[str, Any]]:
    """Each call n_cold times right after a dose write (cold), then n times in a row (warm); a warm call slower
    than budget_s in all stops after 5 requests (printed as requests=)."""
    results = []
    write_uid = calls[-1][0].rsplit("/", 1)[1]

    def get(path, query):
        start = time.perf_counter()
        resp = plugin.handle_rest("GET", path, dict(query), {}, b"")
        ms = (time.perf_counter() - start) * 1000
        if resp.status != 200:
            raise RuntimeError(f"GET {path}?{urlencode(query)} answered {resp.status}: {resp.body[:300]!r}")
        return ms, resp

    for path, query, fixed in calls:
        cold = []
        for _ in range(n_cold):
            dose_write(plugin.cfg, write_uid)
            cold.append(get(path, query)[0])
        warm: list[float] = []
        while len(warm) < n and (len(warm) < 5 or sum(warm) / 1000 < budget_s):
            ms, resp = get(path, query)
            warm.append(ms)
        route = "/nmdose" + path.split("/study/")[0] + ("/study/{uid}" if "/study/" in path else "")
        route += f"?{fixed}" if fixed else ""
        filters = (
            urlencode({k: v for k, v in query.items() if k not in ("group", "format", "measure")}) or "none"
        )
        r = {"route": route, "filters": filters, "p50_ms": statistics.median(warm), "p95_ms": p95(warm),
             "cold_p50_ms": statistics.median(cold), "cold_p95_ms": p95(cold),
             "rows": rows_of(resp.body, resp.content_type), "requests": len(warm)}  # fmt: skip
        results.append(r)
        print(f"route={route} filters={filters} p50_ms={r['p50_ms']:.1f} p95_ms={r['p95_ms']:.1f} "
              f"cold_p50_ms={r['cold_p50_ms']:.1f} cold_p95_ms={r['cold_p95_ms']:.1f} rows={r['rows']} "
              f"requests={len(warm)}", flush=True)  # fmt: skip
    return results


# ----- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--requests", type=int, default=20, help="warm requests per call")
    ap.add_argument("--cold", type=int, default=5, help="requests per call right after a dose write")
    ap.add_argument(
        "--budget-s", type=float, default=10.0, help="after 5 warm requests, stop a call slower than this"
    )
    ap.add_argument("--keep", action="store_true", help="leave the database running (prints how to stop it)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"loadavg_start={os.getloadavg()[0]:.2f}", flush=True)
    with scratch_postgres("nmdose-bench-pages-") as db:
        cfg = db.cfg
        relax_checkpoints(cfg)
        with closing(connect(cfg, role="owner")) as conn:  # the bulk fill and VACUUM: the tables' owner
            applied = migrate(conn, REPO / "sql")
            start = time.perf_counter()
            steps = fill(conn, args.studies, args.events, cfg.source_node.name)
            fill_s = time.perf_counter() - start
            start = time.perf_counter()
            vacuum_analyze(conn)
            vacuum_s = time.perf_counter() - start
            sizes = counts(conn)
            writes = exercise_writes(conn, cfg.source_node.name)
            calls = cases(conn)
        print(f"migrations={applied[-1] if applied else 'none'}")
        for key, value in {
            **sizes,
            **steps,
            "fill_s": fill_s,
            "vacuum_analyze_s": vacuum_s,
            **writes,
        }.items():
            print(f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}", flush=True)
        plugin = Plugin(cfg)
        results = time_routes(plugin, calls, args.requests, args.cold, args.budget_s)
        print(f"routes_timed={len(results)}")
        print(f"routes_p95_over_200ms={sum(r['p95_ms'] >= 200 for r in results)}")
        print(f"routes_cold_p95_over_200ms={sum(r['cold_p95_ms'] >= 200 for r in results)}")
        print(f"worst_p95_ms={max(r['p95_ms'] for r in results):.1f}")
        print(f"worst_cold_p95_ms={max(r['cold_p95_ms'] for r in results):.1f}")
        cached = [r for r in results if r["route"].startswith("/nmdose/api/dose/") and r["cold_p50_ms"] > 0]
        speedups = [r["cold_p50_ms"] / r["p50_ms"] for r in cached if "ct-events" not in r["route"]]
        if speedups:
            print(f"cache_speedup_median={statistics.median(speedups):.1f}")
        print(f"loadavg_end={os.getloadavg()[0]:.2f}")
        print(f"total_s={time.perf_counter() - t0:.1f}")
        stop_audit_writer(plugin)  # its rows written before the database stops
        db.keep = args.keep
        if db.keep:
            print(db.kept_message())
    return 0


if __name__ == "__main__":
    sys.exit(main())
