"""The watch-folder importer against a real research PACS (Orthanc + plugin, index in PostgreSQL), real
PostgreSQL rows and real inotify: patient rewrite, bad input (a non-DICOM file, a folder name that does not
match, a broken DICOM file), idempotence (the same folder twice), kill -9 during an import and the restart that
completes it, and the watch service's debounce."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from nmdose.importer import store
from nmdose.importer.folder import REPORT_SUFFIX, import_folder, paths
from nmdose.orthanc_ids import orthanc_study_id
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.stack import Stack
from tests.support import REPO, load, make_config_dir, make_tempdir, wait_for

NM_CLASS = "1.2.840.10008.5.1.4.1.1.20"


def make_study(folder: Path, files: int, *, patient_id: str = "CD-0001", patient_name: str = "Outside^Patient",
               charset: str = "ISO_IR 100", description: str = "Knochenszintigraphie Ganzkörper",
               pixels: int = 64, study_uid: str | None = None) -> list[Path]:  # fmt: skip
    """`files` NM instances of one study (one series) in `folder`, as a CD would hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    written = []
    for n in range(files):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = NM_CLASS
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SpecificCharacterSet = charset
        ds.SOPClassUID = NM_CLASS
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.StudyDescription = description
        ds.ReferringPhysicianName = "Müller^Jörg"
        ds.Modality, ds.InstanceNumber, ds.StudyDate = "NM", n + 1, "20240105"
        ds.Rows = ds.Columns = pixels
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = bytes([n % 251]) * (pixels * pixels * 2)
        path = folder / f"IM{n + 1:05d}"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def write_import_yaml(cfg_dir: Path, **values) -> None:
    settings = yaml.safe_load((REPO / "config" / "import.yaml").read_text())
    settings.update({"enabled": True, "watch": False, **values})
    (cfg_dir / "import.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))


class ImportStack:
    """PostgreSQL + the research PACS (with its plugin) with the importer enabled; no other node runs."""

    def __init__(self, **import_values):
        self.root = make_tempdir("nmdose-import-")
        nodes = {"simulationPACS": {"local": False}, "dosePACS": {"local": False}}
        self.config_dir = make_config_dir(self.root, nodes=nodes)
        write_import_yaml(self.config_dir, **import_values)
        self.cfg = load(self.config_dir)
        self.stack = Stack(self.cfg)
        try:
            self.stack.up()
        except BaseException:
            self.close()
            raise
        self.p = paths(self.cfg)
        self.incoming = self.root / "incoming"  # where `import folder` tests put folders (same filesystem)
        self.incoming.mkdir()
        self.rest = OrthancHttp.for_node(self.cfg, "researchPACS")

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "nmdose.cli", "--config-dir", str(self.config_dir), "--var-dir",
                str(self.cfg.var_dir), *args]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NMDOSE_", "VAULT_"))}
        env["PYTHONPATH"] = str(REPO / "orthanc_plugin") + os.pathsep + str(REPO)
        return env

    def instances(self, patient_id: str, study_uid: str) -> list[dict]:
        try:
            return self.rest.get(f"/studies/{orthanc_study_id(patient_id, study_uid)}/instances")
        except Exception:  # noqa: BLE001 - 404: not there
            return []

    def close(self) -> None:
        try:
            self.stack.down()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def imp():
    running = ImportStack()
    yield running
    running.close()


def _archived(imp: ImportStack, name: str) -> list[Path]:
    return sorted(p for p in imp.p.archive.glob(f"*/{name}*") if p.is_dir())  # a second drop: <name>_1


def _rows(imp: ImportStack, fhash: str) -> list[dict]:
    with contextlib.closing(__import__("nmdose.db", fromlist=["connect"]).connect(imp.cfg)) as conn:
        return [r for r in store.recent(conn, 500) if r["folder_hash"] == fhash]


def test_a_matching_folder_gets_its_patient_and_keeps_the_originals(imp):
    name = "#20240001-홍길동"
    folder = imp.incoming / name
    files = make_study(folder / "DICOM" / "0001", 4)
    (folder / "README.TXT").write_text("viewer on this CD\n")  # not DICOM: skipped and listed
    shutil.copy(files[0], folder / "DICOMDIR")  # the medium's index: skipped and listed
    originals = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    study_uid = str(dcmread(files[0]).StudyInstanceUID)

    result = import_folder(imp.cfg, folder)

    assert result.outcome == "archived", result.summary()
    assert (result.stored, result.already_stored, len(result.skipped), result.pattern_matched) == (
        4,
        0,
        2,
        True,
    )
    assert not folder.exists()
    [archived] = _archived(imp, name)
    assert {p.relative_to(archived): p.read_bytes() for p in archived.rglob("*") if p.is_file()} == originals
    report = (archived.parent / (name + REPORT_SUFFIX)).read_text()
    assert "README.TXT: no DICM prefix" in report and "DICOMDIR" in report
    held = imp.instances("20240001", study_uid)
    assert len(held) == 4
    tags = imp.rest.get(f"/instances/{held[0]['ID']}/simplified-tags")
    assert tags["PatientName"] == "홍길동" and tags["PatientID"] == "20240001"
    assert tags["SpecificCharacterSet"] == "ISO_IR 192"
    assert tags["ReferringPhysicianName"] == "Müller^Jörg"  # the file's other text kept its characters
    assert tags["StudyDescription"] == "Knochenszintigraphie Ganzkörper"
    [row] = _rows(imp, result.folder_hash)
    assert (row["outcome"], row["stored_files"], row["skipped_files"], row["studies"]) == (
        "archived",
        4,
        2,
        1,
    )
    assert row["study_uids"] == [study_uid] and row["destination"].startswith("archive/")
    # no patient name or number in the row, the run log, the service log
    assert "홍길동" not in str(row) and "20240001" not in str(row)
    logs = "".join(p.read_text() for p in imp.cfg.log_dir.rglob("*.log") if "import" in str(p))
    assert "홍길동" not in logs and "20240001" not in logs and study_uid in logs


def test_a_folder_name_that_does_not_match_is_imported_unchanged_and_reported(imp):
    folder = imp.incoming / "CD from Seoul hospital"
    files = make_study(folder, 3, patient_id="SEOUL-77", patient_name="Kim^Younghee")
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    result = import_folder(imp.cfg, folder)
    assert result.outcome == "archived" and result.pattern_matched is False and result.stored == 3
    held = imp.instances("SEOUL-77", study_uid)
    assert len(held) == 3
    assert imp.rest.get(f"/instances/{held[0]['ID']}/simplified-tags")["PatientName"] == "Kim^Younghee"
    [row] = _rows(imp, result.folder_hash)
    assert row["pattern_matched"] is False


def test_a_broken_dicom_file_fails_the_folder_with_a_report_and_stores_nothing(imp):
    name = "#20240002-Lee^Minho"
    folder = imp.incoming / name
    files = make_study(folder, 3)
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])  # cut inside its pixel data (a copy that stopped)
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4 not an image")
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    result = import_folder(imp.cfg, folder)
    assert result.outcome == "failed" and result.stored == 0
    assert not folder.exists()
    [failed] = sorted(imp.p.failed.glob(f"*/{name}"))
    report = (failed.parent / (name + REPORT_SUFFIX)).read_text()
    assert f"{files[1].name}: cut short" in report and "notes.pdf" in report
    assert imp.instances("20240002", study_uid) == []
    [row] = _rows(imp, result.folder_hash)
    assert (row["outcome"], row["bad_files"], row["destination"][:7]) == ("failed", 1, "failed/")


def test_the_same_folder_twice_stores_nothing_twice(imp):
    name = "#20240003-Park^Jisoo"
    folder = imp.incoming / name
    files = make_study(folder, 5)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    first = import_folder(imp.cfg, folder)
    assert first.outcome == "archived" and first.stored == 5
    [archived] = _archived(imp, name)
    shutil.copytree(archived, folder)  # the technologist drops the same CD again
    changes = imp.rest.get("/changes", params={"last": ""})["Last"]
    second = import_folder(imp.cfg, folder)
    assert second.outcome == "archived" and (second.stored, second.already_stored) == (0, 5)
    assert len(imp.instances("20240003", study_uid)) == 5
    new = imp.rest.get("/changes", params={"since": changes, "limit": 1000})["Changes"]
    assert not [c for c in new if c["ChangeType"] == "NewInstance"]  # nothing was stored again
    assert len(_archived(imp, name)) == 2  # each drop archived once, in its own folder


def test_kill_9_during_the_import_then_a_restart_completes_it(imp):
    name = "#20240004-Choi^Hana"
    folder = imp.incoming / name
    count = 400
    files = make_study(folder, count, pixels=128)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    dropped = {p.relative_to(folder): p.read_bytes() for p in files}
    proc = subprocess.Popen(imp.cli("import", "folder", str(folder)), env=imp.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        partly = wait_for(lambda: 0 < len(imp.instances("20240004", study_uid)) < count, 120, 0.05)
        assert partly, "the import never got under way"
        os.kill(proc.pid, signal.SIGKILL)  # mid-store
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = len(imp.instances("20240004", study_uid))
    assert 0 < before < count
    # nothing lost, nothing half-archived: the folder is still in place, as dropped
    assert folder.is_dir() and not _archived(imp, name)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == dropped
    rerun = subprocess.run(imp.cli("import", "folder", "--json", str(folder)), env=imp.env(),
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(imp.instances("20240004", study_uid)) == count
    assert not list(imp.p.stage.glob("*")), "the killed run's staged copies were not removed"
    [archived] = _archived(imp, name)
    assert {p.relative_to(archived): p.read_bytes() for p in archived.rglob("*") if p.is_file()} == dropped
    rows = _rows(imp, store_hash(imp, name))
    assert [r["outcome"] for r in rows] == ["archived", "interrupted"]
    # what the killed run stored (an upload in flight may still have landed) is not sent again
    assert (
        rows[0]["already_stored"] >= before and rows[0]["stored_files"] == count - rows[0]["already_stored"]
    )


def store_hash(imp: ImportStack, name: str) -> str:
    from nmdose.importer.folder import folder_hash

    return folder_hash(imp.cfg, name)


def test_the_watch_waits_for_quiet_then_imports_and_a_killed_watch_resumes(imp):
    """Real inotify: files trickle into the drop folder faster than the debounce; the import starts only once
    the folder has been quiet. Then a `watch` killed mid-import is restarted and finishes the folder."""
    from nmdose.importer.watch import Watcher

    debounce = 1.5
    name = "#20240005-Jung^Woo"
    source = make_study(imp.root / "cd5", 6)
    study_uid = str(dcmread(source[0]).StudyInstanceUID)
    watcher = Watcher(imp.cfg, debounce_s=debounce)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        target = imp.p.drop / name
        target.mkdir()
        for i, f in enumerate(source):  # one file every 0.5 s: never quiet for the debounce until the last
            shutil.copy(f, target / f.name)
            last_file = time.monotonic()
            if i < len(source) - 1:
                time.sleep(0.5)
            assert not imp.instances("20240005", study_uid), "imported before the folder was quiet"
        assert wait_for(lambda: len(imp.instances("20240005", study_uid)) == 6, 60, 0.05)
        latency = time.monotonic() - last_file
        assert wait_for(lambda: _archived(imp, name), 30)
        assert debounce <= latency < debounce + 15, latency
        print(f"\nimport_latency_s={latency:.2f} (debounce {debounce} s, 6 files)")
    finally:
        stop.set()
        thread.join(30)
        watcher.close()

    # a watch service killed mid-import: the restarted one finishes the folder, nothing stored twice
    name = "#20240006-Kang^Mira"
    files = make_study(imp.root / "cd6", 300, pixels=128)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    shutil.copytree(imp.root / "cd6", imp.p.drop / name)
    proc = subprocess.Popen(imp.cli("import", "watch", "--debounce", "0.5"), env=imp.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert wait_for(lambda: 0 < len(imp.instances("20240006", study_uid)) < 300, 120, 0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (imp.p.drop / name).is_dir() and not _archived(imp, name)
    rerun = subprocess.run(imp.cli("import", "watch", "--debounce", "0.5", "--once"), env=imp.env(),
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout[-2000:]
    assert len(imp.instances("20240006", study_uid)) == 300 and _archived(imp, name)
    rows = _rows(imp, store_hash(imp, name))
    assert [r["outcome"] for r in rows] == ["archived", "interrupted"]
    assert rows[0]["already_stored"] + rows[0]["stored_files"] == 300


def test_stack_up_runs_the_watch_service_when_enabled():
    running = ImportStack(watch=True, debounce_s=0.5)
    try:
        rows = {r.node: r for r in running.stack.status()}
        assert rows["import-watch"].state == "running"
        name = "#20240007-Yoon^Seo"
        files = make_study(running.root / "cd7", 2)
        study_uid = str(dcmread(files[0]).StudyInstanceUID)
        shutil.copytree(running.root / "cd7", running.p.drop / name)
        assert wait_for(lambda: len(running.instances("20240007", study_uid)) == 2, 60)
        assert wait_for(lambda: _archived(running, name), 30)
        stopped = running.stack.down()
        assert stopped[0] == "import-watch"
    finally:
        running.close()


def test_the_research_pacs_admits_the_importer_ae_only_from_its_host_and_only_to_store(imp):
    """The importer's AE title (import.yaml aet) may C-STORE into the research PACS, dose candidates included
    (NM here), from its own host only; it may ask nothing else."""
    from pynetdicom import AE
    from pynetdicom.sop_class import NuclearMedicineImageStorage, StudyRootQueryRetrieveInformationModelFind

    node = imp.cfg.research_node
    [path] = make_study(imp.root / "ae-check", 1, patient_id="AE-CHECK")
    ds = dcmread(path)

    def attempt(host: str, service: str) -> str:
        ae = AE(ae_title=imp.cfg.imports.aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        ae.add_requested_context(NuclearMedicineImageStorage)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate(node.host, node.port, ae_title=node.aet, bind_address=(host, 0))
        if not assoc.is_established:
            return "no association"
        try:
            if service == "store":
                status = assoc.send_c_store(ds)
                ok = status is not None and "Status" in status and int(status.Status) == 0
                return "ok" if ok else f"status {status}"
            query = Dataset()
            query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", ""
            answers = [int(s.Status) for s, _ in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
                       if s is not None and "Status" in s]  # fmt: skip
            return "ok" if answers and answers[-1] == 0 else f"status {answers}"
        finally:
            assoc.release()

    assert attempt("127.0.0.2", "store") != "ok"  # the same AE title from another host
    assert imp.instances("AE-CHECK", str(ds.StudyInstanceUID)) == []
    assert attempt("127.0.0.1", "find") != "ok"  # C-STORE only
    assert attempt("127.0.0.1", "store") == "ok"  # control: from its host, an NM image (a dose candidate)
    assert len(imp.instances("AE-CHECK", str(ds.StudyInstanceUID))) == 1


def test_a_file_storescu_cannot_send_fails_the_folder_with_its_reason(imp):
    """A SOP class no storage service knows: storescu does not send it; the folder goes to failed/ naming the
    file and why (not left in place to be retried for ever)."""
    name = "#20240008-Han^Sol"
    folder = imp.incoming / name
    files = make_study(folder, 3)
    ds = dcmread(files[1])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.99"
    ds.save_as(files[1])
    result = import_folder(imp.cfg, folder)
    assert result.outcome == "failed" and result.stored == 2, result.summary()
    [failed] = sorted(imp.p.failed.glob(f"*/{name}"))
    report = (failed.parent / (name + REPORT_SUFFIX)).read_text()
    assert f"{files[1].name}: not sent (unknown storage SOP class" in report
    assert not list(imp.p.stage.glob("*"))
