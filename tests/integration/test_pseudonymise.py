"""Pseudonymised copies (issue 17 item 3) against a real research PACS (Orthanc + plugin, PostgreSQL index) and a
real pseudoPACS Orthanc: Orthanc's own PS3.15 basic profile plus nmdose's keyed pseudonyms, UIDs and date shift;
the same dose numbers on the copy; a run twice stores nothing twice; another project gives other pseudonyms; a
folder target; a study the research PACS does not hold fails alone; re-identification is audited."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from nmdose.db import connect
from nmdose.dose.parse import parse_file
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.pseudonymise import deid
from nmdose.secrets import pseudonym_key
from nmdose.simulate import rdsr as R
from nmdose.stack import Stack
from tests.support import REPO, load, make_config_dir, make_tempdir, pet_ct_dose_study, query

PID, NAME = "PSEUDO-SECRET-7", "Secret^Person"


class PseudoStack:
    """PostgreSQL, the research PACS with its plugin and the pseudoPACS; no other node runs."""

    def __init__(self):
        self.root = make_tempdir("nmdose-pseudo-")
        nodes = {"simulationPACS": {"local": False}, "dosePACS": {"local": False}, "pseudoPACS": {}}
        self.config_dir = make_config_dir(self.root, nodes=nodes)
        self.cfg = load(self.config_dir)
        self.stack = Stack(self.cfg)
        try:
            self.stack.up()
        except BaseException:
            self.close()
            raise
        self.research = OrthancHttp.for_node(self.cfg, "researchPACS")
        self.pseudo = OrthancHttp.for_node(self.cfg, "pseudoPACS")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NMDOSE_", "VAULT_"))}
        env["PYTHONPATH"] = str(REPO / "orthanc_plugin") + os.pathsep + str(REPO)
        argv = [sys.executable, "-m", "nmdose.cli", "--config-dir", str(self.config_dir), "--var-dir",
                str(self.cfg.var_dir), *args]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def close(self) -> None:
        try:
            self.stack.down()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def ps(tmp_path_factory):
    running = PseudoStack()
    check = R.DoseCheck(dlp_alert_value_configured=True, dlp_alert_value=1000.0,
                        accumulated_dlp_forward_estimate=1200.0, alert_reason_for_proceeding="clinical need",
                        alert_person_name="Kim^Radiographer")  # fmt: skip
    study, files = pet_ct_dose_study(tmp_path_factory.mktemp("originals"), dose_check=check, patient_id=PID,
                                     patient_name=NAME, study_date="20240315")  # fmt: skip
    for f in files:
        running.research.request("POST", "/instances", data=Path(f).read_bytes())
    missing = generate_uid()
    with contextlib.closing(connect(running.cfg, role="owner")) as conn, conn, conn.cursor() as cur:
        for project in ("trial-a", "trial-b"):
            cur.execute("INSERT INTO rpacs.project (name, created_by) VALUES (%s, 'test')", (project,))
            cur.execute("INSERT INTO rpacs.project_study (project, study_instance_uid, added_by, how)"
                        " VALUES (%s, %s, 'test', 'uid')", (project, study.study_instance_uid))  # fmt: skip
        cur.execute("INSERT INTO rpacs.project_study (project, study_instance_uid, added_by, how)"
                    " VALUES ('trial-b', %s, 'test', 'uid')", (missing,))  # fmt: skip
    running.study, running.files, running.missing = study, files, missing
    running.key_a = deid.project_key(pseudonym_key(running.cfg), "trial-a")
    yield running
    running.close()


def _copies(ps: PseudoStack, alias: str) -> list[bytes]:
    found = ps.pseudo.post("/tools/find", {"Level": "Instance", "Query": {"PatientID": alias}})
    return [ps.pseudo.request("GET", f"/instances/{i}/file").content for i in found]


def _dose(result: dict) -> tuple:
    ct = result["ct"]
    events = sorted((e["acquisition_protocol"], e["ctdivol_mgy"], e["dlp_mgycm"], e["dose_check"]["dlp_alert_value"])
                    for e in ct["events"])  # fmt: skip
    adm = sorted(
        (a.get("agent"), a.get("activity_mbq"), a.get("radionuclide")) for a in result["radiopharmaceutical"]
    )
    return (result["kind"], ct["total_dlp_mgycm"], tuple(events), tuple(adm), result["patient"]["weight_kg"],
            result["patient"]["age_years"], result["patient"]["sex"])  # fmt: skip


def test_the_copy_carries_the_pseudonym_new_uids_shifted_dates_and_the_same_dose_numbers(ps, tmp_path):
    out = ps.cli("pseudonymise", "--project", "trial-a", "--json")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["state"], r["instances"], r["stored"]) for r in rows] == [("done", 3, 3)]
    alias = deid.pseudonym(ps.key_a, PID)
    assert rows[0]["pseudonyms"] == [alias]
    copies = _copies(ps, alias)
    assert len(copies) == 3
    days = deid.shift_days(ps.key_a, PID)
    want_date = (dt.date(2024, 3, 15) + dt.timedelta(days=days)).strftime("%Y%m%d")
    originals = {pydicom.dcmread(f).SOPInstanceUID: parse_file(f) for f in ps.files}
    by_class = {r["kind"]: _dose(r) for r in originals.values()}
    for data in copies:
        assert PID.encode() not in data and b"Secret" not in data and b"Kim^" not in data
        assert ps.study.study_instance_uid.encode() not in data
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.PatientID == alias and ds.StudyInstanceUID == rows[0]["copy_study_uids"][0]
        assert ds.StudyDate == want_date and ds.PatientIdentityRemoved == "YES"
        assert "PS 3.15 Basic Application Level Confidentiality Profile" in ds.DeidentificationMethod
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
            "113100",
            "113107",
            "113108",
            "113109",
        ]
        assert (
            "InstitutionName" not in ds
            and "ReferringPhysicianName" not in ds
            or not ds.ReferringPhysicianName
        )
        assert "PatientBirthDate" not in ds or not ds.PatientBirthDate
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(data)
        copy = parse_file(path)
        assert copy["status"] == "ok", copy["error"]
        assert _dose(copy) == by_class[copy["kind"]]  # the dose parser gives the same numbers on the copy
    assert query(ps.cfg, "SELECT state, instances, pseudonym FROM rpacs.pseudonymised_copy WHERE project = %s",
                 ("trial-a",)) == [("done", 3, alias)]  # fmt: skip
    audit = query(
        ps.cfg, "SELECT study_uids FROM audit.event WHERE action = 'pseudonymise' ORDER BY id DESC LIMIT 1"
    )
    assert audit and ps.study.study_instance_uid in audit[0][0]


def test_a_second_run_stores_nothing_twice(ps):
    before = len(ps.pseudo.get("/instances"))
    out = ps.cli("pseudonymise", "--project", "trial-a", "--json")
    row = json.loads(out.stdout.splitlines()[0])
    assert (row["stored"], row["already_stored"]) == (0, 3)
    assert len(ps.pseudo.get("/instances")) == before


def test_another_project_gets_another_pseudonym_and_a_missing_study_fails_alone(ps):
    out = ps.cli("pseudonymise", "--project", "trial-b", "--json", check=False)
    assert out.returncode == 1
    rows = {r["study_instance_uid"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows[ps.missing]["state"] == "failed" and "does not hold" in rows[ps.missing]["error"]
    good = rows[ps.study.study_instance_uid]
    assert good["state"] == "done" and good["stored"] == 3
    assert good["pseudonyms"] != [deid.pseudonym(ps.key_a, PID)]
    assert len(ps.pseudo.get("/patients")) == 2


def test_a_folder_target_with_dates_kept(ps, tmp_path):
    ps.cli("pseudonymise", "--project", "trial-a", "--folder", str(tmp_path / "out"), "--dates", "keep")
    files = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(files) == 3 and not list((tmp_path / "out").rglob(".part-*"))
    ds = pydicom.dcmread(files[0])
    assert ds.StudyDate == "20240315" and ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert files[0].parts[-3] == deid.pseudonym(ps.key_a, PID)


def test_reidentification_names_the_patient_and_is_audited(ps):
    alias = deid.pseudonym(ps.key_a, PID)
    out = ps.cli("pseudonymise", "--project", "trial-a", "--reidentify", alias)
    assert out.stdout.split() == [PID, ps.study.study_instance_uid]
    audit = query(ps.cfg, "SELECT params FROM audit.event WHERE action = 'pseudonymise reidentify'")
    assert audit and audit[-1][0]["pseudonym"] == alias
    assert (
        ps.cli(
            "pseudonymise", "--project", "trial-a", "--reidentify", "P0000000000000000", check=False
        ).returncode
        == 1
    )


def test_an_unknown_project_is_a_clear_error(ps):
    out = ps.cli("pseudonymise", "--project", "no-such", check=False)
    assert out.returncode != 0 and "no research project named 'no-such'" in out.stdout + out.stderr


def test_the_project_page_route_queues_the_copy_and_lists_it(ps):
    from tests.support import wait_for

    answer = ps.research.post("/nmdose/api/projects/trial-a/pseudonymise", {"dates": "shift"})
    assert answer["queued"] and answer["job"]["project"] == "trial-a"

    def done():
        d = ps.research.get("/nmdose/api/projects/trial-a/copies")
        return d if d["job"] and d["job"]["state"] == "done" else None

    listing = wait_for(done, timeout_s=120)
    rows = [r for r in listing["rows"] if r["target"] == "pseudoPACS"]
    assert [(r["study_instance_uid"], r["state"], r["instances"]) for r in rows] == [
        (ps.study.study_instance_uid, "done", 3)
    ]
    assert (
        rows[0]["stored"] + rows[0]["already_stored"] == 3
    )  # after the earlier tests' copy: all already there
    with pytest.raises(Exception, match="400"):
        ps.research.post("/nmdose/api/projects/trial-a/pseudonymise", {"dates": "sometimes"})
    with pytest.raises(Exception, match="404"):
        ps.research.get("/nmdose/api/projects/no-such/copies")


def test_echo_reaches_the_pseudo_pacs_directly_and_does_not_ask_the_research_pacs(ps):
    """The pseudoPACS is no DICOM peer of the research PACS (nmdose writes to it over REST): `nmdose echo` says so
    instead of failing, and echoscu reaches it (C-ECHO from anyone, nothing else)."""
    out = ps.cli("echo", "pseudoPACS")
    row = next(line for line in out.stdout.splitlines() if line.startswith("pseudoPACS"))
    assert "n/a (not its peer)" in row and "FAILED" not in row
