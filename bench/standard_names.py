"""Benchmark: standard names (issue 16 item 1) on a hospital-sized dose schema.

Starts a throw-away PostgreSQL (the local stack's launcher, free port, /tmp), applies the migrations and fills in
SQL with generate_series (no DICOM) --studies dose.study rows (descriptions drawn from ~40 spellings of ~12
examinations, Korean and English, no scanner: the rules are for all scanners), --events-per-study CT events each (~20 protocol spellings) and an
administration for every 10th study. Then, with the rules of config/standard_names.example.yaml plus one rule per
spelling of the bench (--rules in all):

    import_s   rules stored + the studies they concern named, with their CT events and administrations
               (nmdose.dose.standard_names.apply_changed, as `nmdose names import` and the page)
    again_s    apply to every study again (`nmdose names apply`): nothing changes (idempotent), the cost of checking
    edit_one_rule_s  one rule renamed (the page's Save): the studies of its raw form renamed
    one_ms     the ingest hook on one study (apply_to_study), p50 of 200
    suggest_s  the unmapped raw values grouped by normalised form, with counts

    .venv/bin/python bench/standard_names.py [--studies 1000000] [--events-per-study 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.scratch import dose_counts, scratch_postgres, vacuum_analyze  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.db.migrate import migrate  # noqa: E402
from nmdose.dose import standard_names as sn  # noqa: E402
from tests.support import REPO  # noqa: E402

# (spelling, the standard name it should get); the spellings of one examination differ in case, spacing,
# punctuation, width and language
DESCRIPTIONS = [
    ("CT Chest", "CT chest"), ("CHEST CT", "CT chest"), ("흉부 CT", "CT chest"), ("chest-ct", "CT chest"),
    ("ＣＴ Ｃｈｅｓｔ", "CT chest"), ("CT Chest C+", "CT chest contrast"), ("흉부 조영 CT", "CT chest contrast"),
    ("CT Chest w/ contrast", "CT chest contrast"), ("Low Dose Chest CT", "CT chest low dose"),
    ("흉부 저선량 CT", "CT chest low dose"), ("CT Abdomen Pelvis", "CT abdomen-pelvis"),
    ("복부 골반 CT", "CT abdomen-pelvis"), ("ABD/PELVIS CT", "CT abdomen-pelvis"), ("CT Brain", "CT head"),
    ("Head CT", "CT head"), ("두부 CT", "CT head"), ("머리 CT", "CT head"),
    ("PET-CT Whole Body FDG", "PET-CT whole body FDG"), ("전신 PET-CT", "PET-CT whole body FDG"),
    ("PET CT WB FDG", "PET-CT whole body FDG"), ("PET-CT Torso FDG", "PET-CT whole body FDG"),
    ("NM Whole Body Bone Scan", "Bone scan whole body"), ("전신 뼈 스캔", "Bone scan whole body"),
    ("PET-CT PSMA", "PET-CT PSMA"), ("CT Neck", "CT neck"), ("경부 CT", "CT neck"),
    ("CT Spine Lumbar", "CT spine"), ("척추 CT", "CT spine"),
    ("Outside CT Import", None), ("Unknown exam", None), ("Research protocol 7", None),
]  # fmt: skip
PROTOCOLS = [
    ("Thorax 1.0 B31f", "Chest helical"), ("Chest routine", "Chest helical"), ("CHEST ROUTINE 5mm", None),
    ("WholeBody_CTAC", "CTAC whole body"), ("WB CTAC 3.75", "CTAC whole body"), ("전신 저선량 CT", "CTAC whole body"),
    ("Abd routine", "Abdomen helical"), ("Abdomen 5.0 B30f", "Abdomen helical"), ("Head routine", "Head axial"),
    ("Topogram", None), ("Scout", None), ("Localizer", None),
]  # fmt: skip
AGENTS = [("Fluorodeoxyglucose F^18^", "FDG"), ("Tc-99m MDP", "MDP"), ("PSMA-1007 F^18^", None)]

FILL = """
INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description, scanner_id, ct_event_count,
                        ct_total_dlp_mgycm)
SELECT '1.2.826.0.1.3680043.10.999.' || i, d, extract(year FROM d)::int,
       (%(descriptions)s::text[])[1 + floor(power(random(), 2) * %(nd)s)::int],
       NULL, %(events)s, 100 + random() * 900
  FROM generate_series(1, %(n)s) i CROSS JOIN LATERAL (SELECT date '2015-01-01' + (i %% 3650) AS d) dd;
INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year, acquisition_protocol,
                           ctdivol_mgy, dlp_mgycm)
SELECT s.study_instance_uid, '#' || o, o, s.study_date, s.study_year,
       (%(protocols)s::text[])[1 + floor(random() * %(np)s)::int], 1 + random() * 30, 10 + random() * 500
  FROM dose.study s CROSS JOIN generate_series(0, %(events)s - 1) o;
INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal, source, agent,
                                      activity_mbq, study_date, study_year)
SELECT s.study_instance_uid, '#0', 0, 'rrdsr', (%(agents)s::text[])[1 + floor(random() * %(na)s)::int],
       100 + random() * 300, s.study_date, s.study_year
  FROM dose.study s WHERE right(s.study_instance_uid, 1) = '0';
"""


def fill(conn, studies: int, events_per_study: int) -> None:
    """FILL with this bench's spellings (also bench/standard_name_filter.py's data set); committed."""
    with conn.cursor() as cur:
        cur.execute(
            FILL,
            {
                "descriptions": [d for d, _ in DESCRIPTIONS],
                "nd": len(DESCRIPTIONS),
                "protocols": [p for p, _ in PROTOCOLS],
                "np": len(PROTOCOLS),
                "agents": [a for a, _ in AGENTS],
                "na": len(AGENTS),
                "n": studies,
                "events": events_per_study,
            },
        )
    conn.commit()


def own_rules() -> list[sn.Rule]:
    """One rule per spelling of the bench that has a standard name."""
    rules = [sn.Rule("study_description", d, name) for d, name in DESCRIPTIONS if name]
    rules += [sn.Rule("acquisition_protocol", p, name) for p, name in PROTOCOLS if name]
    rules += [sn.Rule("agent", a, name) for a, name in AGENTS if name]
    return rules


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1_000_000)
    ap.add_argument("--events-per-study", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"loadavg_start={os.getloadavg()[0]:.2f}", flush=True)
    with scratch_postgres("nmdose-bench-names-") as db:
        cfg = db.cfg
        with closing(connect(cfg, role="owner")) as conn:
            migrate(conn, REPO / "sql")
            start = time.perf_counter()
            fill(conn, args.studies, args.events_per_study)
            vacuum_analyze(conn)
            studies, events, admins = dose_counts(conn)
            print(f"studies={studies} ct_events={events} administrations={admins}")
            print(f"fill_s={time.perf_counter() - start:.1f}", flush=True)

        example = sn.parse_yaml((REPO / "config" / "standard_names.example.yaml").read_text(encoding="utf-8"))
        own = own_rules()
        with closing(connect(cfg)) as conn:  # the worker role, as the CLI and the routes
            start = time.perf_counter()
            with conn, conn.cursor() as cur:
                counts = sn.upsert_rules(cur, example, "bench")
                counts2 = sn.upsert_rules(cur, own, "bench")
                applied = sn.apply_changed(cur, sn.changed_keys([*example, *own]))  # as the import does
            print(
                f"rules_inserted={counts['inserted'] + counts2['inserted']} rules_renamed={counts2['updated']}"
            )
            print(f"import_s={time.perf_counter() - start:.1f} named={applied}", flush=True)
            start = time.perf_counter()
            with conn, conn.cursor() as cur:
                again = sn.apply(cur)
            print(f"again_s={time.perf_counter() - start:.1f} changed={again}", flush=True)
            # one rule edited on the page: the studies of its raw form only are looked at and renamed
            start = time.perf_counter()
            with conn, conn.cursor() as cur:
                rule = next(r for r in own if r.raw_value == "머리 CT")
                cur.execute(
                    "SELECT id FROM dose.standard_name_rule WHERE normalised = %s", (rule.normalised,)
                )
                rule_id = cur.fetchone()[0]
                sn.update_rule(
                    cur, rule_id, sn.Rule(rule.field, rule.raw_value, "CT head (renamed)"), "bench"
                )
                edited = sn.apply_changed(cur, {(rule.field, rule.normalised)})
            print(f"edit_one_rule_s={time.perf_counter() - start:.1f} changed={edited}", flush=True)
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM dose.study WHERE standard_name IS NULL")
                unnamed = cur.fetchone()[0]
                cur.execute("SELECT study_instance_uid FROM dose.study ORDER BY random() LIMIT 200")
                sample = [r[0] for r in cur.fetchall()]
            conn.rollback()
            print(f"studies_without_name={unnamed} ({100 * unnamed / max(studies, 1):.1f} %)")
            times = []
            for uid in sample:
                start = time.perf_counter()
                with conn, conn.cursor() as cur:
                    sn.apply_to_study(cur, uid)
                times.append((time.perf_counter() - start) * 1000)
            print(f"one_ms_p50={statistics.median(times):.1f} one_ms_max={max(times):.1f}")
            start = time.perf_counter()
            with conn.cursor() as cur:
                groups = sn.suggestions(cur)
            conn.rollback()
            print(f"suggest_s={time.perf_counter() - start:.1f} groups={len(groups)}")
            for g in groups[:5]:
                print(f"  suggestion {g['field']} {g['normalised']!r} studies={g['studies']}")
        print(f"loadavg_end={os.getloadavg()[0]:.2f}")
        print(f"total_s={time.perf_counter() - t0:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
