"""Alert latency: from a dose object arriving at the dose PACS to the alert e-mail being accepted by the SMTP
server (issue 16 item 3; goal under 10 s).

A throwaway local stack (PostgreSQL, the dose PACS stand-in with its hook into the dose spool, the dose worker with
its alert sender) and a real SMTP server on loopback (aiosmtpd, STARTTLS + AUTH; credentials from the stack's
secret store). A rule e-mails every study whose DLP is above 100 mGy·cm. Each round stores one new synthetic CT
RDSR (DLP 500) with DCMTK `storescu` as the research PACS would, and waits for the e-mail naming its study.

Prints key=value lines:
  alert_latency_s_p50 / _max   storescu start -> the SMTP server accepted the message naming the study
  storescu_s_p50               the store alone (baseline measured in the same run: association, C-STORE, release)
  ratio_p50                    alert_latency_s_p50 / storescu_s_p50
  rounds, goal_s=10, goal_met

Usage: .venv/bin/python bench/alerts.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orthanc_plugin"))

import yaml  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from nmdose.alerts import sink, store  # noqa: E402
from nmdose.alerts.settings import SMTP_PASSWORD, SMTP_USERNAME  # noqa: E402
from nmdose.db import connect  # noqa: E402
from nmdose.pacs.dcmtk import run_tool  # noqa: E402
from nmdose.simulate import rdsr as R  # noqa: E402
from tests.support import RunningStack  # noqa: E402

GOAL_S = 10.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nmdose-bench-alerts-"))
    running = RunningStack(nodes={"simulationPACS": {"local": False}})
    smtp = None
    try:
        cfg = running.cfg
        user, password = cfg.secrets.ensure(SMTP_USERNAME), cfg.secrets.ensure(SMTP_PASSWORD)
        smtp = sink.start(work / "sink", username=user, password=password)
        (running.config_dir / "alerts.yaml").write_text(yaml.safe_dump({
            "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "starttls", "ca_file": str(smtp.ca_file)},
            "sender": {"poll_s": 0.5},
        }))  # fmt: skip
        running.stack.dose_worker_down()  # its sender reads config/alerts.yaml when it starts
        running.stack.dose_worker_up()
        with contextlib.closing(connect(cfg)) as conn:
            store.upsert_rule(conn, {"name": "bench DLP > 100", "kind": "dlp_above", "threshold": 100,
                                     "email_to": ["physics@bench.local"]})  # fmt: skip
        dose, research = cfg.dose_node, cfg.research_node
        latencies, stores = [], []
        for i in range(args.rounds + 1):  # round 0 warms up (first association, first ingest)
            info = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description="CT bench alerts")
            ds = R.ct_radiation_dose_sr(info, [R.CtAcquisition(dlp_mgycm=500.0)], series_uid=generate_uid(),
                                        sop_uid=generate_uid())  # fmt: skip
            path = R.save(ds, work / f"rdsr-{i}.dcm")
            before = len(smtp.received)
            start = time.time()
            result = run_tool("storescu", ["-aet", research.aet, "-aec", dose.aet, "127.0.0.1", str(dose.port),
                                           str(path)])  # fmt: skip
            stored = time.time()
            if not result.ok:
                raise SystemExit(f"storescu failed: {result.stderr[-2000:]}")
            got = smtp.wait(before + 1, timeout_s=60)
            mail = next(r for r in got[before:] if info.study_instance_uid in r.message.get_content())
            if i:
                latencies.append(mail.at - start)
                stores.append(stored - start)
            print(f"round {i}: storescu {stored - start:.3f} s, e-mail accepted after {mail.at - start:.3f} s",
                  file=sys.stderr)  # fmt: skip
        p50, worst, base = statistics.median(latencies), max(latencies), statistics.median(stores)
        print(f"rounds={len(latencies)}")
        print(f"alert_latency_s_p50={p50:.3f}")
        print(f"alert_latency_s_max={worst:.3f}")
        print(f"storescu_s_p50={base:.3f}")
        print(f"ratio_p50={p50 / base:.1f}")
        print(f"goal_s={GOAL_S:g}")
        print(f"goal_met={'yes' if worst < GOAL_S else 'no'}")
        return 0 if worst < GOAL_S else 1
    finally:
        if smtp is not None:
            smtp.stop()
        running.close()


if __name__ == "__main__":
    raise SystemExit(main())
