"""The importer without a PACS: file classification, the patient rewrite and its character sets, the folder's
content key and hash, import.yaml validation, the prod refusal of open folders, and the watch's debounce on
real inotify events (the import itself replaced)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset

from nmdose.errors import ConfigError
from nmdose.importer import dicomfiles, folder, watch
from tests.integration.test_import import make_study
from tests.support import REPO, load, make_config_dir, make_prod_config_dir


def _import_yaml(cfg_dir: Path, **values) -> None:
    settings = yaml.safe_load((REPO / "config" / "import.yaml").read_text())
    settings.update(values)
    (cfg_dir / "import.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))


def test_files_are_classified(tmp_path):
    [good] = make_study(tmp_path / "a", 1)
    data = good.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 100])
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")
    (tmp_path / "noprefix").write_bytes(data[132:])  # a dataset without the Part 10 preamble
    kinds = {
        name: dicomfiles.classify(tmp_path / name, name)
        for name in ("cut.dcm", "readme.txt", "junk.dcm", "noprefix")
    }
    assert dicomfiles.classify(good, "x").kind == "dicom"
    assert kinds["cut.dcm"].kind == "broken" and "cut short" in kinds["cut.dcm"].reason
    assert kinds["readme.txt"].kind == "not_dicom"
    assert kinds["junk.dcm"].kind == "broken"
    assert kinds["noprefix"].kind == "dicom"
    (tmp_path / "DICOMDIR").write_bytes(data)
    assert dicomfiles.classify(tmp_path / "DICOMDIR", "DICOMDIR").kind == "dicomdir"


def test_a_korean_name_switches_the_copy_to_utf8_and_keeps_the_other_text(tmp_path):
    [src] = make_study(tmp_path / "a", 1, charset="ISO_IR 100", description="Skelettszintigrafie Größe")
    before = src.read_bytes()
    dst = tmp_path / "staged" / "x.dcm"
    dicomfiles.rewrite(src, dst, "12345", "홍길동")
    assert src.read_bytes() == before  # the dropped file is never changed
    ds = dcmread(dst)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert (str(ds.PatientName), ds.PatientID) == ("홍길동", "12345")
    assert (
        ds.StudyDescription == "Skelettszintigrafie Größe" and str(ds.ReferringPhysicianName) == "Müller^Jörg"
    )
    assert ds.PixelData == dcmread(src).PixelData


def test_an_ascii_name_leaves_the_character_set_alone(tmp_path):
    [src] = make_study(tmp_path / "a", 1, charset="ISO_IR 100")
    dst = tmp_path / "x.dcm"
    dicomfiles.rewrite(src, dst, "777", "Hong^Gildong")
    ds = dcmread(dst)
    assert ds.SpecificCharacterSet == "ISO_IR 100" and str(ds.ReferringPhysicianName) == "Müller^Jörg"


def test_the_content_key_follows_the_files_and_the_hash_hides_the_name(tmp_path, monkeypatch):
    make_study(tmp_path / "f", 2)
    key = folder.content_key(folder.scan(tmp_path / "f"))
    assert folder.content_key(folder.scan(tmp_path / "f")) == key
    (tmp_path / "f" / "extra").write_text("x")
    assert folder.content_key(folder.scan(tmp_path / "f")) != key
    cfg = load(make_config_dir(tmp_path / "c", free_ports=False))
    plain = folder.folder_hash(cfg, "#1-홍길동")
    assert plain.startswith("sha256:") and "홍길동" not in plain
    monkeypatch.setenv(folder.HASH_KEY_SECRET, "a-site-key")
    keyed = folder.folder_hash(load(make_config_dir(tmp_path / "d", free_ports=False)), "#1-홍길동")
    assert keyed.startswith("hmac:") and keyed[5:] != plain[7:]


def test_import_yaml_is_validated(tmp_path):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    cfg = load(cfg_dir)
    assert cfg.imports.enabled is False and cfg.imports.debounce_s == 180
    assert cfg.imports.patient_pattern == r"^#([0-9]+)-(.+)$"
    assert cfg.imports.folder("drop", cfg.var_dir) == cfg.var_dir / "import" / "drop"
    _import_yaml(cfg_dir, patient_pattern="^#([0-9]+)$")
    with pytest.raises(
        ConfigError, match=r"import.yaml: patient_pattern: expected a regular expression with two"
    ):
        load(cfg_dir)
    _import_yaml(cfg_dir, patient_pattern=None, debounce=3)
    with pytest.raises(ConfigError, match=r"import.yaml: debounce: unknown key"):
        load(cfg_dir)
    _import_yaml(cfg_dir, patient_pattern="", drop_folder="/srv/dicom/import")
    cfg = load(cfg_dir)
    assert cfg.imports.patient_pattern is None
    assert cfg.imports.folder("drop", cfg.var_dir) == Path("/srv/dicom/import")


def test_prod_refuses_an_import_folder_every_user_may_write(tmp_path):
    cfg_dir = make_prod_config_dir(tmp_path)
    dirs = {kind: tmp_path / "dicom" / kind for kind in ("drop", "archive", "failed")}
    for d in dirs.values():
        d.mkdir(parents=True)
        os.chmod(d, 0o750)
    _import_yaml(cfg_dir, enabled=True, **{f"{k}_folder": str(d) for k, d in dirs.items()})
    assert load(cfg_dir).imports.enabled  # accepted as it is
    os.chmod(dirs["drop"], 0o777)
    with pytest.raises(ConfigError) as refused:
        load(cfg_dir)
    assert str(refused.value).startswith(
        f"{cfg_dir / 'import.yaml'}: drop_folder: expected a folder not writable by every user (chmod o-w) in "
        f"prod running mode, got '{dirs['drop']} mode 777'"
    )
    os.chmod(dirs["drop"], 0o750)
    os.rmdir(dirs["failed"])
    with pytest.raises(ConfigError, match=r"import.yaml: failed_folder: expected an existing folder"):
        load(cfg_dir)


def test_the_watch_imports_a_folder_only_after_it_was_quiet(tmp_path, monkeypatch):
    cfg_dir = make_config_dir(tmp_path, free_ports=False)
    cfg = load(cfg_dir)
    started: dict[str, float] = {}

    class Done:
        outcome = "archived"

        def summary(self) -> str:
            return "done"

    def fake_import(cfg, path, **kw):
        started[path.name] = time.monotonic()
        return Done()

    monkeypatch.setattr(watch, "import_folder", fake_import)
    w = watch.Watcher(cfg, debounce_s=0.6)
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()
    try:
        drop = folder.paths(cfg).drop
        (drop / "#1-A" / "sub").mkdir(parents=True)
        last = 0.0
        for i in range(5):  # writes in a sub-folder created after the watch started count too
            (drop / "#1-A" / "sub" / f"f{i}").write_bytes(b"x" * 10)
            last = time.monotonic()
            time.sleep(0.3)
            assert "#1-A" not in started
        deadline = time.monotonic() + 10
        while "#1-A" not in started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started["#1-A"] - last >= 0.6
        (drop / ".hidden").mkdir()  # hidden folders (a copy tool's temporary one) are left alone
        time.sleep(1)
        assert ".hidden" not in started
    finally:
        stop.set()
        thread.join(10)
        w.close()


@pytest.mark.parametrize(
    "charset, name, ascii_text",
    [
        (None, "홍길동", True),  # the default repertoire: header only
        ("ISO_IR 192", "홍길동", False),  # UTF-8 already: header only
        ("ISO_IR 100", "Hong^Gildong", False),  # an ASCII value: header only
        ("ISO_IR 100", "홍길동", True),  # Latin-1 label, every text value ASCII: header only
        ("ISO_IR 100", "홍길동", False),  # Latin-1 text: every value re-encoded
        ("ISO 2022 IR 149", "김영희", False),
    ],
)
def test_the_header_only_rewrite_equals_the_full_one(tmp_path, charset, name, ascii_text):
    [src] = make_study(tmp_path / "a", 1, charset=charset or "ISO_IR 6")
    ds = dcmread(src)
    if charset is None:
        del ds.SpecificCharacterSet
    if ascii_text:
        ds.ReferringPhysicianName, ds.StudyDescription = "Hong^Gildong", "Bone scan"
        ds.ProcedureCodeSequence = [Dataset()]
        ds.ProcedureCodeSequence[0].CodeMeaning = "Bone scan"
    elif charset == "ISO 2022 IR 149":
        ds.ReferringPhysicianName, ds.StudyDescription = "이^민호", "뼈 스캔"
    ds.save_as(src)
    fast, full = dicomfiles.rewritten(src, "12345", name), dicomfiles.rewritten_fully(src, "12345", name)
    (tmp_path / "fast.dcm").write_bytes(fast)
    (tmp_path / "full.dcm").write_bytes(full)
    a, b = dcmread(tmp_path / "fast.dcm"), dcmread(tmp_path / "full.dcm")
    assert (str(a.PatientName), a.PatientID) == (name, "12345")
    assert {e.tag: str(e.value) for e in a.iterall() if e.keyword != "PixelData"} == {
        e.tag: str(e.value) for e in b.iterall() if e.keyword != "PixelData"
    }
    assert a.PixelData == b.PixelData == dcmread(src).PixelData
    dropped = dcmread(src)
    if charset == "ISO 2022 IR 149":
        assert str(a.ReferringPhysicianName) == "이^민호" and a.SpecificCharacterSet == "ISO_IR 192"
    if ascii_text and name != "Hong^Gildong":  # the header-only path was taken: the rest is byte for byte
        assert fast.endswith(src.read_bytes()[-len(dropped.PixelData) - 60 :])


def _semantics(data: bytes, tmp_path: Path, name: str) -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    ds = dcmread(path)
    return {(e.tag, e.VR): str(e.value) for e in ds.iterall() if e.keyword != "PixelData"} | {
        "pixels": ds.get("PixelData")
    }


@pytest.mark.parametrize("lengths", ["undefined", "explicit"])
def test_the_byte_level_rewrite_equals_the_full_one_on_simulated_files(tmp_path, lengths):
    """CT, PET, NM and dose reports (deep SR content trees) as simulated (ISO_IR 100, accented names): the byte
    level rewrite re-encodes every text value to UTF-8 like the full rewrite, sequences of undefined length
    (pydicom's) and of explicit length (`dcmconv +e`, recomputed after the re-encoding) alike."""
    import subprocess

    from nmdose.simulate import generate

    generate(tmp_path / "sim", studies=2, years=1, seed=5)
    files = sorted((tmp_path / "sim").rglob("*.dcm"))
    modalities = set()
    for src in files:
        if lengths == "explicit":
            subprocess.run(["dcmconv", "+e", str(src), str(src)], check=True, capture_output=True)
        raw = dicomfiles.rewritten_raw(src.read_bytes(), "12345", "홍길동")
        assert raw is not None, src.name  # the byte-level path handles what nmdose simulates
        full = dicomfiles.rewritten_fully(src, "12345", "홍길동")
        a, b = _semantics(raw, tmp_path, "raw.dcm"), _semantics(full, tmp_path, "full.dcm")
        assert a == b, src.name
        ds = dcmread(tmp_path / "raw.dcm")
        assert (str(ds.PatientName), ds.PatientID, ds.SpecificCharacterSet) == (
            "홍길동",
            "12345",
            "ISO_IR 192",
        )
        modalities.add(ds.Modality)
        assert dicomfiles.rewritten(src, "12345", "홍길동") == raw
    assert {"CT", "SR"} <= modalities


def test_the_byte_level_rewrite_leaves_other_files_to_the_full_one(tmp_path):
    from pydicom.uid import ImplicitVRLittleEndian

    [src] = make_study(tmp_path / "a", 1, charset="ISO 2022 IR 149", description="Bone scan")
    assert dicomfiles.rewritten_raw(src.read_bytes(), "1", "홍길동") is None  # ISO 2022: re-encoded fully
    assert dicomfiles.rewritten_raw(src.read_bytes(), "1", "Hong") is not None  # an ASCII value: header only
    [src] = make_study(tmp_path / "b", 1)
    ds = dcmread(src)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(src, enforce_file_format=True)
    assert dicomfiles.rewritten_raw(src.read_bytes(), "1", "Hong") is None  # implicit VR
    out = dicomfiles.rewritten(src, "1", "홍길동")  # the full rewrite takes it
    (tmp_path / "out.dcm").write_bytes(out)
    assert str(dcmread(tmp_path / "out.dcm").PatientName) == "홍길동"
    assert dcmread(src).PatientID == "CD-0001"  # the dropped file itself never changes


def test_the_staging_folder_is_private_and_a_killed_run_s_is_removed(tmp_path):
    cfg = load(make_config_dir(tmp_path, free_ports=False))
    p = folder.paths(cfg)
    fhash = folder.folder_hash(cfg, "#1-Kim")
    stale = p.stage / f"{folder.short(fhash)}.999999"
    stale.mkdir(parents=True)
    (stale / "000").mkdir()
    other = p.stage / "0123456789ab.1"
    other.mkdir()
    stage = folder.stage_dir(p, fhash)
    assert not stale.exists() and other.exists()  # another folder's run is left alone
    assert stage.parent == p.stage and stage.name == f"{folder.short(fhash)}.{os.getpid()}"
    assert (stage.stat().st_mode & 0o777, p.stage.stat().st_mode & 0o777) == (0o700, 0o700)
