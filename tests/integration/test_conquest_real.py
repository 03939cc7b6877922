"""The dose PACS as a real, stock Conquest 1.5.0e with the project's conquest/ files (issue 14 items 1-4).

Needs a dgate built from Conquest's public source: run `scripts/conquest_check.sh`, which builds it (once, cached)
and runs this module with CONQUEST_DGATE (the binary) and CONQUEST_TREE (the source tree: linux/ templates,
dgate.dic). Without them every test here is skipped. Real vendors' files come from ../shared/realfiles (see its
README); the Conquest server runs as `nobody` when the tests run as root, so a spool it may not write is real.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from nmdose.stack import free_port
from tests.support import REPO

DGATE = os.environ.get("CONQUEST_DGATE", "")
TREE = Path(os.environ.get("CONQUEST_TREE", "/nonexistent"))
REAL = Path(os.environ.get("CONQUEST_REALFILES", str(REPO.parent / "shared" / "realfiles")))
STORESCU = shutil.which("storescu")
AS_NOBODY = os.geteuid() == 0 and shutil.which("setpriv") is not None
RETRY_S = 3  # RetryDelay in the test's dicom.ini (stock: 100 s)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not DGATE or not Path(DGATE).is_file(), reason="CONQUEST_DGATE not set: scripts/conquest_check.sh"
    ),
    pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed"),
]


@dataclass
class Conquest:
    home: Path
    port: int
    spool: Path
    proc: subprocess.Popen

    def store(self, *files: Path, calling: str = "ORTHANC") -> subprocess.CompletedProcess:
        env = {**os.environ, "TCP_NODELAY": "1"}
        argv = [STORESCU, "-v", "-R", "-aet", calling, "-aec", "CONQUESTSRV1", "127.0.0.1", str(self.port)]
        return subprocess.run([*argv, *map(str, files)], capture_output=True, text=True, timeout=60, env=env)

    def trouble(self) -> str:
        path = self.home / "PacsTrouble.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stored(self, sop: str) -> list[Path]:
        return [p for p in (self.home / "data").rglob("*.dcm") if sop in p.name or _sop(p) == sop]

    def entries(self) -> list[Path]:
        return sorted((self.spool / "incoming").glob("*.job")) if (self.spool / "incoming").is_dir() else []

    def handed_over(self) -> dict[str, Path]:
        """SOP Instance UID -> the copy each spool entry names."""
        out = {}
        for entry in self.entries():
            match = re.fullmatch(r"file=(.+)\nsource=conquest\nowned=1\n", entry.read_text())
            assert match, entry.read_text()
            copy = Path(match.group(1))
            assert copy.parent == self.spool / "objects"
            out[_sop(copy)] = copy
        return out


def _sop(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def _wait(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _config(home: Path, port: int, spool: Path) -> None:
    template = (TREE / "linux" / "conf" / "dicom.ini.sqlite").read_text().replace("${CONQUEST}", str(home))
    template = re.sub(r"^TCPPort\s*=.*$", f"TCPPort                  = {port}", template, flags=re.M)
    fragment = [
        ln.replace(
            "/opt/nmdose/conquest/lua/nmdose_import.lua", str(REPO / "conquest" / "lua" / "nmdose_import.lua")
        ).replace("/var/spool/nmdose/dose", str(spool))
        for ln in (REPO / "conquest" / "dicom.ini").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    fragment += [f"RetryDelay               = {RETRY_S}", "FailHoldOff              = 1"]
    (home / "dicom.ini").write_text(template.replace("[lua]", "\n".join(fragment) + "\n\n[lua]"))
    shutil.copy(TREE / "linux" / "conf" / "dicom.sql.sqlite", home / "dicom.sql")
    shutil.copy(DGATE, home / "dgate")
    for name in ("acrnema.map", "dgatesop.lst", "dgate.dic"):
        shutil.copy(TREE / "linux" / name, home / name)
    with open(home / "dgatesop.lst", "a") as fh:  # install step: append the nmdose lines
        fh.write((REPO / "conquest" / "dgatesop.nmdose.lst").read_text())
    for sub in ("data/dbase", "data/incoming"):
        (home / sub).mkdir(parents=True, exist_ok=True)


def _dgate_argv(home: Path, *args: str) -> list[str]:
    """dgate reads the dicom.ini next to its own binary: each run has its copy."""
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if AS_NOBODY else []
    return [*prefix, str(home / "dgate"), *args]


@pytest.fixture(scope="module")
def conquest():
    home = Path(tempfile.mkdtemp(prefix="nmdose-conquest-real-", dir="/tmp"))
    os.chmod(home, 0o755)
    spool = home / "spool"
    for sub in ("incoming", "objects"):
        (spool / sub).mkdir(parents=True)
    port = free_port()
    _config(home, port, spool)
    if AS_NOBODY:
        subprocess.run(["chown", "-R", "nobody:nogroup", str(home)], check=True)
    regen = subprocess.run(
        _dgate_argv(home, "-v", "-r"), cwd=home, capture_output=True, text=True, timeout=120
    )
    assert "Regeneration Complete" in regen.stdout + regen.stderr, regen.stdout[-2000:]
    log = open(home / "console.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(_dgate_argv(home, "-v"), cwd=home, stdout=log, stderr=subprocess.STDOUT)
    server = Conquest(home, port, spool, proc)
    assert _wait(
        lambda: subprocess.run(["echoscu", "127.0.0.1", str(port)], capture_output=True).returncode == 0
    )
    yield server
    server.proc.send_signal(signal.SIGKILL)  # the one running now (tests restart it)
    server.proc.wait(timeout=10)
    log.close()
    if not os.environ.get("CONQUEST_KEEP"):
        shutil.rmtree(home, ignore_errors=True)


def _variant(
    source: Path,
    folder: Path,
    *,
    sop_class: str | None = None,
    patient_id: str | None = None,
    modality: str | None = None,
) -> Path:
    """A copy of `source` with a new SOP Instance UID (and another SOP class, PatientID or Modality)."""
    ds = dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if sop_class:
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
    if patient_id:
        ds.PatientID = patient_id
    if modality:
        ds.Modality = modality
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path)
    return path


def _nmdose_classes() -> list[str]:
    text = (REPO / "conquest" / "dgatesop.nmdose.lst").read_text()
    return re.findall(r"^\S+\s+(1\.2\.840\.10008\.\S+)\s+sop\s*$", text, re.M)


def test_item1_a_stock_dgatesop_lst_refuses_rrdsr_and_the_nmdose_lines_admit_every_class(conquest, tmp_path):
    rrdsr = REAL / "openrem-develop" / "NM-RRDSR-Siemens.dcm"
    installed = (conquest.home / "dgatesop.lst").read_text()
    stock = (TREE / "linux" / "dgatesop.lst").read_text()
    (conquest.home / "dgatesop.lst").write_text(stock)  # Conquest re-reads it per association: no restart
    try:
        refused = conquest.store(_variant(rrdsr, tmp_path / "stock"))
    finally:
        (conquest.home / "dgatesop.lst").write_text(installed)
    assert (
        refused.returncode != 0 and "No Acceptable Presentation Contexts" in refused.stderr + refused.stdout
    )
    assert "1.2.840.10008.5.1.4.1.1.88.68" in _nmdose_classes()
    sent = set()
    for uid in _nmdose_classes():
        assert uid not in stock  # each line is needed
        path = _variant(rrdsr, tmp_path / "classes", sop_class=uid)
        proc = conquest.store(path)
        assert proc.returncode == 0, (uid, proc.stderr[-1500:])
        sent.add(_sop(path))
    assert _wait(lambda: sent <= set(conquest.handed_over()))  # (Modality SR: each one a dose object)
    # the SR and image classes nmdose reads or forwards that the stock list already has
    for uid in ("1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
                "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.20",
                "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7"):  # fmt: skip
        assert re.search(rf"^\S+\s+{re.escape(uid)}\s+sop\s*$", stock, re.M), uid


def test_items2_3_only_what_conquest_stored_is_handed_over_as_a_byte_copy(conquest, tmp_path):
    files = [
        REAL / "openrem-develop" / "NM-RRDSR-Siemens-Extended.dcm",
        REAL / "openrem-develop" / "NM-PetIm-Siemens.dcm",
        REAL / "openrem-develop" / "NM-NmIm-Siemens.dcm",
        REAL / "openrem-0.10.0" / "CT-RDSR-Siemens_Flash-TAP-SS.dcm",
        REAL / "openrem-0.10.0" / "CT-ESR-GE_VCT.dcm",
        REAL / "openrem-0.10.0" / "CT-SC-Philips_Brilliance16P.dcm",
    ]
    before = set(conquest.handed_over())
    stored, refused = set(), set()
    for path in files:  # one association each: Conquest may refuse some (the anonymised files reuse studies)
        proc = conquest.store(path)
        sop = _sop(path)
        (stored if proc.returncode == 0 else refused).add(sop)
        assert bool(conquest.stored(sop)) == (proc.returncode == 0), (path.name, proc.stderr[-800:])
    assert len(stored) >= 4, (stored, refused)
    assert _wait(lambda: stored <= set(conquest.handed_over()))
    time.sleep(1.5)
    copies = conquest.handed_over()
    assert set(copies) - before == stored  # what Conquest stored, once each, and nothing it refused
    for sop in stored:
        (archived,) = conquest.stored(sop)
        assert copies[sop].read_bytes() == archived.read_bytes(), sop  # the archive's own bytes
    # item 3: an object Conquest refuses after the ImportConverter (0x0110, "inconsistent link PatientID": the
    # study is already stored for another patient) is not handed over
    link = _variant(files[0], tmp_path / "link", patient_id="ANOTHER-PATIENT")
    proc = conquest.store(link)
    assert proc.returncode != 0 and "Status: 0x110" in proc.stdout + proc.stderr, proc.stdout[-1500:]
    assert "Refused to enter inconsistent link PatientID" in conquest.trouble()
    time.sleep(1.5)
    assert _sop(link) not in conquest.handed_over() and conquest.stored(_sop(link)) == []


def test_item3_a_forged_dose_object_is_refused_not_stored_not_handed_over(conquest, tmp_path):
    forged = _variant(REAL / "openrem-develop" / "NM-RRDSR-Siemens.dcm", tmp_path / "forged")
    proc = conquest.store(forged, calling="INTRUDER")
    assert proc.returncode != 0
    time.sleep(1.5)
    sop = _sop(forged)
    assert conquest.stored(sop) == [] and sop not in conquest.handed_over()
    line = next(ln for ln in conquest.trouble().splitlines() if sop in ln)
    assert "*** nmdose_import.lua: refused" in line and "INTRUDER" in line


def test_item4_a_missing_or_unwritable_spool_is_logged_with_its_reason_and_conquest_retries(
    conquest, tmp_path
):
    source = REAL / "openrem-develop" / "NM-RRDSR-Siemens.dcm"
    away = conquest.spool.with_name("spool.away")
    conquest.spool.rename(away)
    try:
        missing = _variant(source, tmp_path / "missing")
        proc = conquest.store(missing)
        assert proc.returncode == 0  # stored: the C-STORE never fails because of nmdose
        assert _wait(lambda: "retries later" in conquest.trouble())
        line = next(ln for ln in conquest.trouble().splitlines() if "retries later" in ln)
        assert line.rstrip().endswith("No such file or directory") and str(conquest.spool / "objects") in line
    finally:
        away.rename(conquest.spool)
    # Conquest retries from its ExportFailures file once RetryDelay has passed
    assert _wait(lambda: _sop(missing) in conquest.handed_over(), timeout_s=RETRY_S * 6)
    if not AS_NOBODY and os.geteuid() == 0:
        pytest.skip("root without setpriv: a spool Conquest may not write cannot be made")
    objects = conquest.spool / "objects"
    owner = objects.stat()
    os.chown(objects, 0, 0)
    os.chmod(objects, 0o755)
    try:
        unwritable = _variant(source, tmp_path / "unwritable")
        assert conquest.store(unwritable).returncode == 0
        assert _wait(lambda: "Permission denied" in conquest.trouble())
        line = next(ln for ln in conquest.trouble().splitlines() if "Permission denied" in ln)
        assert line.split("*** ", 1)[1].startswith(
            "nmdose_import.lua: not handed over, Conquest retries later"
        )
    finally:
        os.chown(objects, owner.st_uid, owner.st_gid)
    assert _wait(lambda: _sop(unwritable) in conquest.handed_over(), timeout_s=RETRY_S * 6)
    assert not list(objects.glob(".*")) and not list((conquest.spool / "incoming").glob(".*"))  # no tmp left


def _echo(port: int) -> bool:
    return subprocess.run(["echoscu", "127.0.0.1", str(port)], capture_output=True).returncode == 0


def _restart(conquest: Conquest) -> None:
    """kill -9, then start again on the same port (Conquest does not set SO_REUSEADDR: binding may take a while)."""
    conquest.proc.send_signal(signal.SIGKILL)
    conquest.proc.wait(timeout=10)
    log = open(conquest.home / "console.log", "ab")  # noqa: SIM115 - the process keeps it
    deadline = time.monotonic() + 150
    while True:
        conquest.proc = subprocess.Popen(
            _dgate_argv(conquest.home, "-v"), cwd=conquest.home, stdout=log, stderr=subprocess.STDOUT
        )
        up = _wait(lambda: _echo(conquest.port), 5)
        if up and conquest.proc.poll() is None:
            return
        conquest.proc.kill()
        conquest.proc.wait(timeout=10)
        assert time.monotonic() < deadline, "Conquest did not start again"
        time.sleep(5)


def test_item3_a_deferred_hand_over_survives_a_conquest_crash(conquest, tmp_path):
    """The ExportFailures file is on disk: killed with an object waiting for the spool, Conquest hands it over
    after its restart."""
    away = conquest.spool.with_name("spool.away")
    conquest.spool.rename(away)
    try:
        waiting = _variant(REAL / "openrem-develop" / "NM-RRDSR-Siemens.dcm", tmp_path / "crash")
        assert conquest.store(waiting).returncode == 0
        assert _wait(lambda: any(conquest.home.glob("ExportFailures*")))
        _restart(conquest)
    finally:
        away.rename(conquest.spool)
    assert _wait(lambda: _sop(waiting) in conquest.handed_over(), timeout_s=RETRY_S * 10)


def test_item3_nmdose_respool_hands_over_what_a_crash_left_behind(conquest, tmp_path):
    """Conquest's export queue lives in memory: what it had not run yet when killed is stored but not handed over
    (measured: printed). conquest/lua/nmdose_respool.lua, run with dgate --dolua: after the restart, hands every
    dose object Conquest stored in the last hours over again (byte copies), and nothing else."""
    source = REAL / "openrem-develop" / "NM-RRDSR-Siemens.dcm"
    files = [_variant(source, tmp_path / "burst") for _ in range(30)]
    other = _variant(source, tmp_path / "other", sop_class="1.2.840.10008.5.1.4.1.1.2", modality="CT")
    assert conquest.store(*files).returncode == 0 and conquest.store(other).returncode == 0
    conquest.proc.send_signal(signal.SIGKILL)  # at once after the last C-STORE response
    conquest.proc.wait(timeout=10)
    time.sleep(0.5)
    sops = {_sop(p) for p in files}
    handed = sops & set(conquest.handed_over())
    assert all(conquest.stored(s) for s in sops) and conquest.stored(_sop(other))
    print(f"\nkill -9 right after 30 C-STOREs: 30 stored, {len(handed)} handed over")
    _restart(conquest)
    before = len(conquest.entries())
    script = REPO / "conquest" / "lua" / "nmdose_respool.lua"
    chunk = f"--dolua:NMDOSE_HOURS=1 NMDOSE_SPOOL='{conquest.spool}' dofile('{script}')"
    proc = subprocess.run(_dgate_argv(conquest.home, chunk), cwd=conquest.home, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("nmdose_respool.lua:")]
    assert summary and "0 failed" in summary[0] and "***" not in proc.stdout, proc.stdout[-2000:]
    print(summary[0])
    copies = conquest.handed_over()
    assert sops <= set(copies) and _sop(other) not in copies
    for sop in sops:
        (archived,) = conquest.stored(sop)
        assert copies[sop].read_bytes() == archived.read_bytes()
    assert len(conquest.entries()) - before == int(
        re.search(r"(\d+) dose objects handed over", summary[0])[1]
    )
