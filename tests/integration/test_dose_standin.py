"""The dose-PACS stand-in's Python hook (nmdose.dose.standin_hook, issue 14 item 11): a 3,000-level nested SR
leaves Orthanc up (the Lua hook it replaced aborted Orthanc), spool entries keep the Lua hook's format, senders
outside the security profile are refused, and the change-log cursor replays what was not yet spooled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from io import BytesIO
from pathlib import Path

import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from nmdose.dose import standin_hook as H
from nmdose.security import profile
from nmdose.stack import dicom_env
from tests.integration.test_dicom_security import OTHER_HOST, ct_image, forged_rdsr, held, request, wait_rows
from tests.integration.test_dose_ingest import _pet_ct_study
from tests.support import RunningStack
from tests.support import query as _query
from tests.support import wait_for as _wait

pytestmark = pytest.mark.integration

STORESCU = shutil.which("storescu")
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _element(group: int, elem: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def deep_sr(path: Path, depth: int = 3000, sop_class: str = XRAY_DOSE_SR) -> str:
    """An SR whose ContentSequence nests ``depth`` levels (undefined lengths, explicit VR little endian), built
    byte by byte (pydicom's writer recurses per level); returns its SOP Instance UID."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.ValueType = "DEEP-SR", "Deep^SR", "SR", "CONTAINER"
    title = Dataset()  # the root of an X-Ray Radiation Dose Report: the parser walks its tree
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = (
        "113701",
        "DCM",
        "X-Ray Radiation Dose Report",
    )
    ds.ConceptNameCodeSequence = [title]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    head = BytesIO()
    ds.save_as(head, enforce_file_format=True)
    sq_open = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item_open = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_close, sq_close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0), struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    item = _element(0x0040, 0xA010, "CS", b"CONTAINS") + _element(0x0040, 0xA040, "CS", b"CONTAINER")
    path.write_bytes(head.getvalue() + (sq_open + item_open + item) * depth + (item_close + sq_close) * depth)
    return ds.SOPInstanceUID


def _storescu(cfg, files: list[Path], *, calling: str | None = None) -> subprocess.CompletedProcess:
    node = cfg.dose_node
    argv = [STORESCU, "-R", "-aet", calling or cfg.research_node.aet, "-aec", node.aet, "127.0.0.1",
            str(node.port), *map(str, files)]  # fmt: skip
    return subprocess.run(argv, env=dicom_env(), capture_output=True, text=True, timeout=120)


def _instance_id(node, sop_uid: str) -> str | None:
    found = requests.post(f"{node.http_url}/tools/lookup", data=sop_uid, timeout=10).json()
    return next((item["ID"] for item in found if item["Type"] == "Instance"), None)


def _entries_of(spool: Path, instance_id: str) -> list[Path]:
    return [p for sub in ("incoming", "done", "failed") for p in (spool / sub).glob(f"*-{instance_id}.job")]


@pytest.fixture
def tmp() -> Path:
    path = Path(tempfile.mkdtemp(prefix="nmdose-standin-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ----- the stand-in of the session stack
def test_the_stand_in_runs_the_python_hook_and_no_lua(stack):
    conf = stack.stack.orthanc_config("dosePACS")
    assert "LuaScripts" not in conf and conf["PythonScript"].endswith("dose_standin_entry.py")
    section = conf["NmdoseDoseStandin"]
    assert section["Spool"] == str(stack.cfg.dose_spool)
    senders = profile.store_senders(stack.cfg, "dosePACS")
    assert section["StoreSenders"] == {aet: sorted(hosts) for aet, hosts in senders.items()}
    assert stack.cfg.research_node.aet in section["StoreSenders"]
    plugins = requests.get(f"{stack.cfg.dose_node.http_url}/plugins", timeout=5).json()
    assert "python" in plugins


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")
def test_a_3000_level_nested_sr_is_stored_orthanc_stays_up_and_ingest_says_why(stack, tmp):
    node, cfg = stack.cfg.dose_node, stack.cfg
    pid = stack.stack.status()[3].pid
    sop_uid = deep_sr(tmp / "deep.dcm")
    proc = _storescu(cfg, [tmp / "deep.dcm"])
    assert proc.returncode == 0, proc.stderr
    assert requests.get(f"{node.http_url}/system", timeout=5).ok  # still up (the Lua hook aborted Orthanc)
    assert stack.stack.status()[3].pid == pid and stack.stack.status()[3].state == "running"
    instance = _instance_id(node, sop_uid)
    assert instance, "the nested SR is stored"
    # an SR is a dose candidate: spooled; the worker cannot read its tree and says why: a dead letter, or an
    # object recorded as not a dose report with the reason (the dose rules decide which), never a crash
    spool = cfg.dose_spool
    assert _wait(lambda: [p for p in _entries_of(spool, instance) if p.parent.name in ("done", "failed")], 30)
    (entry,) = _entries_of(spool, instance)

    def reason() -> str:
        dead = _query(cfg, "SELECT error FROM dose.dead_letter WHERE file_path LIKE %s", (f"%{instance}%",))
        kept = _query(cfg, "SELECT status, warnings::text FROM dose.object WHERE sop_instance_uid = %s",
                      (sop_uid,))  # fmt: skip
        if entry.parent.name == "failed":
            return dead[0][0] if dead else ""
        return kept[0][1] if kept and kept[0][0] == "not_dose" else ""

    assert _wait(lambda: reason().strip(), 15), (entry, reason())
    assert stack.stack.dose_worker_status().state == "running"
    # and the stand-in goes on spooling what comes next
    study, files = _pet_ct_study(tmp / "after", events=1)
    assert _storescu(cfg, files).returncode == 0
    assert _wait(lambda: _query(cfg, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s",
                                (study.study_instance_uid,))[0][0] == 3, 20)  # fmt: skip


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")
def test_rdsr_rrdsr_and_pet_get_the_lua_hooks_spool_entries(stack, tmp):
    cfg, node = stack.cfg, stack.cfg.dose_node
    study, files = _pet_ct_study(tmp / "a", events=2)
    image = ct_image(study.study_instance_uid)  # a sample image: stored, not a dose candidate
    image.file_meta.MediaStorageSOPClassUID = image.SOPClassUID
    image.file_meta.MediaStorageSOPInstanceUID = image.SOPInstanceUID
    image.save_as(tmp / "ct.dcm", enforce_file_format=True)
    assert _storescu(cfg, [*files, tmp / "ct.dcm"]).returncode == 0
    spool = cfg.dose_spool
    from pydicom import dcmread

    for path in files:
        instance = _instance_id(node, dcmread(path).SOPInstanceUID)
        (entry,) = _wait(lambda instance=instance: _entries_of(spool, instance), 15)
        name = entry.name.removesuffix(".job")
        stamp, _, rest = name.partition("-")
        assert len(stamp) == 12 and stamp.isdigit() and rest == instance
        assert entry.read_text() == f"file={spool / 'objects' / (name + '.dcm')}\nsource=orthanc\nowned=1\n"
    assert _wait(lambda: _query(cfg, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s",
                                (study.study_instance_uid,))[0][0] == 3, 15)  # fmt: skip
    assert not _entries_of(spool, _instance_id(node, image.SOPInstanceUID))
    assert not list((spool / "objects").glob(".*.tmp")) and not list((spool / "incoming").glob(".*.tmp"))
    cursor = Path(stack.stack.orthanc_config("dosePACS")["NmdoseDoseStandin"]["CursorFile"])
    last = json.loads(requests.get(f"{node.http_url}/changes?last", timeout=5).text)["Last"]
    assert _wait(lambda: int(cursor.read_text()) >= last - 10, 10)  # acknowledged up to the log's end


# ----- a stand-in whose operator opened C-STORE to everyone: the hook's own checks hold
@pytest.fixture(scope="module")
def opened():
    running = RunningStack(nodes={"dosePACS": {"orthanc_settings": {"DicomAlwaysAllowStore": True}}})
    yield running
    running.close()


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")
def test_opened_stand_in_refuses_dose_objects_from_senders_outside_the_profile(opened, tmp):
    cfg = opened.cfg
    dose, research = cfg.dose_node, cfg.research_node
    uid = generate_uid()
    forged = forged_rdsr(tmp, uid)
    # an unknown AE title: refused at the C-STORE (the Lua filter answered Success and dropped it)
    assert request(dose, "INTRUDER", "store", dataset=forged) == "refused (0x124)"
    # the nested SR from an unknown AE title: refused too (only its first elements are read)
    deep_uid = deep_sr(tmp / "deep.dcm")
    argv = [STORESCU, "-R", "-v", "-aet", "INTRUDER", "-aec", dose.aet, "127.0.0.1", str(dose.port)]
    proc = subprocess.run([*argv, str(tmp / "deep.dcm")], env=dicom_env(), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert "Status: 0x124)" in proc.stderr, proc.stderr
    assert not held(dose, deep_uid)
    assert requests.get(f"{dose.http_url}/system", timeout=5).ok
    # images are what the operator opened
    assert request(dose, "INTRUDER", "store", dataset=ct_image(uid)) == "ok"
    # the pipeline's AE title from a host outside the profile: stored by Orthanc, deleted by the hook, never spooled
    assert request(dose, research.aet, "store", dataset=forged, host=OTHER_HOST) == "ok"
    assert _wait(lambda: not held(dose, forged.SOPInstanceUID), 15)
    time.sleep(1)
    assert not held(dose, forged.SOPInstanceUID)
    assert _query(cfg, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s", (uid,)) == [(0,)]
    # control: the same object from the research PACS's own address is taken and ingested
    assert request(dose, research.aet, "store", dataset=forged) == "ok"
    assert wait_rows(cfg, uid) == 1
    assert held(dose, forged.SOPInstanceUID)


def test_the_stand_in_killed_before_spooling_replays_from_its_cursor(opened, tmp):
    """The spool unwritable (the hook keeps its cursor and retries), then kill -9: the stored objects are
    spooled when Orthanc comes back."""
    cfg, stack = opened.cfg, opened.stack
    cursor = Path(stack.orthanc_config("dosePACS")["NmdoseDoseStandin"]["CursorFile"])
    position = lambda: int(cursor.read_text()) if cursor.exists() else 0  # noqa: E731
    study, files = _pet_ct_study(tmp / "k", events=1)
    objects = cfg.dose_spool / "objects"
    stack.dose_worker_down()  # it would recreate the folder
    objects.rename(tmp / "objects-aside")
    objects.write_text("not a folder")  # (tests run as root: a read-only mode would not stop the hook)
    try:
        before = position()
        assert _storescu(cfg, files).returncode == 0
        time.sleep(1.5)
        assert position() == before
        stack.orthanc_down("dosePACS", sig=signal.SIGKILL)
    finally:
        objects.unlink()
        (tmp / "objects-aside").rename(objects)
    stack.up()
    assert _wait(lambda: _query(cfg, "SELECT count(*) FROM dose.object WHERE study_instance_uid = %s",
                                (study.study_instance_uid,))[0][0] == 3, 30)  # fmt: skip
    assert position() > before


# ----- the hook's logic without Orthanc (a fake REST API)
class FakeOrthanc:
    def __init__(self):
        self.changes: list[dict] = []
        self.instances: dict[str, dict] = {}
        self.deleted: list[str] = []

    def store(self, iid: str, *, sop_class: str, modality: str, aet="ORTHANC", ip="127.0.0.1",
              origin="DicomProtocol", data=b"DICM") -> None:  # fmt: skip
        self.instances[iid] = {"meta": {"SopClassUid": sop_class, "RemoteAET": aet, "RemoteIP": ip,
                                        "Origin": origin}, "modality": modality, "data": data}  # fmt: skip
        self.changes.append({"ChangeType": "NewInstance", "ID": iid, "Seq": len(self.changes) + 1})

    def get(self, uri: str) -> bytes:
        if uri.startswith("/changes?since="):
            since = int(uri.split("=")[1].split("&")[0])
            page = [c for c in self.changes if c["Seq"] > since][: H.CHANGES_PAGE]
            return json.dumps({"Changes": page, "Done": True, "Last": len(self.changes)}).encode()
        parts = uri.split("?")[0].strip("/").split("/")
        kind, rid = parts[0], parts[1]
        if kind == "series":
            return json.dumps({"MainDicomTags": {"Modality": self.instances[rid]["modality"]}}).encode()
        if rid not in self.instances:
            raise H.NotFound(uri)
        if len(parts) == 2:
            return json.dumps({"ParentSeries": rid}).encode()
        return json.dumps(self.instances[rid]["meta"]).encode() if parts[2] == "metadata" \
            else self.instances[rid]["data"]  # fmt: skip

    def delete(self, uri: str) -> None:
        rid = uri.rsplit("/", 1)[1]
        self.instances.pop(rid, None)
        self.deleted.append(rid)


def _hook(tmp: Path, api: FakeOrthanc) -> H.StandinHook:
    for sub in ("incoming", "objects", "done", "failed"):
        (tmp / "spool" / sub).mkdir(parents=True, exist_ok=True)
    return H.StandinHook(tmp / "spool", {"ORTHANC": {"127.0.0.1"}}, tmp / "cursor", api.get, api.delete)


def test_hook_spools_candidates_skips_others_and_deletes_forged_senders(tmp):
    api = FakeOrthanc()
    api.store("rdsr", sop_class=XRAY_DOSE_SR, modality="SR", data=b"rdsr bytes")
    api.store("ct", sop_class=CT_IMAGE, modality="CT")
    api.store("pet-modality", sop_class="1.2.840.10008.5.1.4.1.1.66", modality="PT")  # by modality
    api.store("forged", sop_class=XRAY_DOSE_SR, modality="SR", ip="10.0.0.9")
    api.store("rest-upload", sop_class=XRAY_DOSE_SR, modality="SR", aet="", ip="", origin="RestApi")
    hook = _hook(tmp, api)
    assert hook.run_once() == 5
    assert (hook.stats.spooled, hook.stats.skipped, hook.stats.refused) == (3, 1, 1)
    assert api.deleted == ["forged"] and (tmp / "cursor").read_text() == "5\n"
    entries = sorted((tmp / "spool" / "incoming").glob("*.job"))
    assert sorted(p.name.split("-", 1)[1] for p in entries) == [
        "pet-modality.job",
        "rdsr.job",
        "rest-upload.job",
    ]
    rdsr = next(p for p in entries if p.name.endswith("-rdsr.job"))
    fields = dict(line.split("=", 1) for line in rdsr.read_text().splitlines())
    assert fields["source"] == "orthanc" and fields["owned"] == "1"
    assert (
        Path(fields["file"]).read_bytes() == b"rdsr bytes" and Path(fields["file"]).parent.name == "objects"
    )
    assert oct(Path(fields["file"]).stat().st_mode & 0o777) == "0o600"
    assert hook.run_once() == 0  # nothing new: nothing spooled twice


def test_hook_keeps_its_cursor_while_the_spool_cannot_be_written_and_loses_nothing(tmp):
    api = FakeOrthanc()
    api.store("a", sop_class=XRAY_DOSE_SR, modality="SR")
    hook = _hook(tmp, api)
    assert hook.run_once() == 1
    api.store("b", sop_class=XRAY_DOSE_SR, modality="SR")
    api.store("c", sop_class=XRAY_DOSE_SR, modality="SR")
    shutil.rmtree(tmp / "spool" / "incoming")
    with pytest.raises(OSError):
        hook.run_once()
    assert (tmp / "cursor").read_text() == "1\n"
    assert list((tmp / "spool" / "objects").iterdir()) == [next((tmp / "spool" / "objects").glob("*-a.dcm"))]
    (tmp / "spool" / "incoming").mkdir()
    assert hook.run_once() == 2 and (tmp / "cursor").read_text() == "3\n"
    assert sorted(p.name.split("-", 1)[1] for p in (tmp / "spool" / "incoming").glob("*.job")) == [
        "b.job",
        "c.job",
    ]


def test_hook_thread_spools_after_a_wake_and_stops(tmp):
    api = FakeOrthanc()
    hook = _hook(tmp, api)
    hook.poll_s = 30  # only the wake-up can make it look again
    hook.start()
    try:
        time.sleep(0.2)
        api.store("x", sop_class=XRAY_DOSE_SR, modality="SR")
        hook.wake()
        assert _wait(lambda: list((tmp / "spool" / "incoming").glob("*-x.job")), 5)
    finally:
        hook.stop()
    assert not hook._thread.is_alive()


def test_the_filter_reads_only_the_first_elements_of_a_deep_sr(tmp):
    deep_sr(tmp / "deep.dcm")
    data = (tmp / "deep.dcm").read_bytes()
    assert H.dose_facts(data) == (XRAY_DOSE_SR, "SR")
    hook = _hook(tmp, FakeOrthanc())
    assert hook.incoming_store_status("INTRUDER", lambda: data) == H.NOT_AUTHORIZED
    assert hook.incoming_store_status("INTRUDER", lambda: b"not dicom at all") == H.NOT_AUTHORIZED
    assert hook.incoming_store_status("ORTHANC", lambda: 1 / 0) == 0  # a sender of the profile: nothing read
    image = ct_image("1.2.3")
    buf = BytesIO()
    image.save_as(buf, implicit_vr=False, little_endian=True)
    assert hook.incoming_store_status("INTRUDER", lambda: buf.getvalue()) == 0


def test_each_reception_is_spooled_once_whichever_path_sees_it_first(tmp):
    """The stored-instance callback (every reception, re-sends included) and the change log (new instances,
    durable) meet: a new instance gives one entry either way round; a re-send (callback only) gives another."""
    api = FakeOrthanc()
    hook = _hook(tmp, api)
    names = lambda: sorted(p.name.split("-", 1)[1] for p in (tmp / "spool" / "incoming").glob("*.job"))  # noqa: E731
    api.store("a", sop_class=XRAY_DOSE_SR, modality="SR")
    hook.stored("a")  # the callback first
    assert hook.run_once() == 2 and names() == ["a.job"]
    api.store("b", sop_class=XRAY_DOSE_SR, modality="SR")
    assert hook.run_once() == 1 and names() == ["a.job", "b.job"]  # the change log first
    hook.stored("b")  # then b's callback: already spooled
    assert hook.run_once() == 1 and names() == ["a.job", "b.job"]
    hook.stored("a")  # a re-send of a: seen again (times_seen), no change in the log
    assert hook.run_once() == 1
    assert (
        len(list((tmp / "spool" / "incoming").glob("*-a*.job"))) == 2
    )  # its own entry, even in the same second
    assert hook.stats.spooled == 3 and (tmp / "cursor").read_text() == "2\n"


def test_an_instance_orthanc_cannot_give_is_given_up_after_a_few_passes_and_the_others_go_on(tmp):
    api = FakeOrthanc()
    api.store("lost", sop_class=XRAY_DOSE_SR, modality="SR")
    api.store("good", sop_class=XRAY_DOSE_SR, modality="SR")
    real_get = api.get

    def get(uri: str) -> bytes:
        if uri == "/instances/lost/file":
            raise RuntimeError("(6, 'Inexistent file')")
        return real_get(uri)

    hook = H.StandinHook(tmp / "spool", {"ORTHANC": {"127.0.0.1"}}, tmp / "cursor", get, api.delete)
    _hook(tmp, api)  # the spool's folders
    for _ in range(H.MAX_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            hook.run_once()
    assert not (tmp / "cursor").exists()
    assert hook.run_once() == 2 and (tmp / "cursor").read_text() == "2\n"
    assert [p.name.split("-", 1)[1] for p in (tmp / "spool" / "incoming").glob("*.job")] == ["good.job"]
    assert "lost: given up" in hook.stats.errors[-1]
