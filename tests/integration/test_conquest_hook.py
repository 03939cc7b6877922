"""conquest/lua/nmdose_import.lua under the Lua 5.1 interpreter, with the globals Conquest 1.5.0e gives it.

The two converter lines of conquest/dicom.ini run the script: the ImportConverter (NMDOSE_STAGE='import', before
Conquest stores the object: calling-AE check only) and the ExportConverter (NMDOSE_STAGE='export', after Conquest
stored it: the hand-over into the spool). What Conquest itself does with the lines (storage, refusals, retries)
is checked against a real Conquest by scripts/conquest_check.sh (tests/integration/test_conquest_real.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from nmdose.cli import main
from nmdose.simulate import rdsr as R
from tests.support import REPO
from tests.support import pet_ct_dose_study as _pet_ct_study

pytestmark = pytest.mark.integration

LUA = shutil.which("lua5.1")
SCRIPT = REPO / "conquest" / "lua" / "nmdose_import.lua"
needs_lua = pytest.mark.skipif(LUA is None, reason="lua5.1 not installed")


@pytest.fixture
def tmp() -> Path:
    path = Path(tempfile.mkdtemp(prefix="nmdose-conquest-", dir="/tmp"))
    os.chmod(path, 0o755)  # readable by `nobody` for the permission test
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ct_image(study: R.DoseStudyInfo, path: Path) -> Path:
    ds = R.pet_nm_image_header(study, R.RadiopharmaceuticalAdministration(), modality="PT",
                               series_uid=generate_uid(), sop_uid=generate_uid())  # fmt: skip
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "CT"  # CT Image Storage: not a dose object
    return R.save(ds, path)


def _run(
    path: Path,
    spool: Path,
    calling: str,
    stage: str | None,
    *,
    allowed: str | None = "{ORTHANC = true}",
    env_allowed: str | None = None,
    filename: str | None = "stored",
    write: str = "copy",
    as_nobody: bool = False,
    runs: int = 1,
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the script as Conquest does for one object, `runs` times in one Lua state.

    stage 'import': Association.Calling is the calling AE title, Filename is nil (measured: Conquest sets
    neither Filename nor the stored file in an ImportConverter). stage 'export': the converter line sets
    Filename='%f' (the stored file: `path`) and NMDOSE_CALLING='%u'; Association.Calling is empty there
    (measured). `filename=None`: an export line without Filename. Data:Write copies `path` (`write='nothing'`:
    writes nothing, as Conquest's does on failure). script() commands are recorded; returns the process and them."""
    ds = dcmread(path, stop_before_pixels=True)
    script = SCRIPT
    if as_nobody:  # `nobody` may not traverse the checkout (a clone under a 0700 mktemp folder): its own copy
        script = spool.parent / SCRIPT.name
        shutil.copyfile(SCRIPT, script)
        os.chmod(script, 0o644)
    record = spool.parent / f"{path.name}.script-calls"
    record.unlink(missing_ok=True)
    lines = [f"NMDOSE_SPOOL = [==[{spool}]==]"]
    if allowed is not None:
        lines.append(f"NMDOSE_ALLOWED_CALLING = {allowed}")
    if stage is not None:
        lines.append(f"NMDOSE_STAGE = '{stage}'")
    if stage == "export":
        lines.append(f"NMDOSE_CALLING = [==[{calling}]==]")
        if filename is not None:
            lines.append(f"Filename = [==[{path if filename == 'stored' else filename}]==]")
        association_calling = ""
    else:
        association_calling = calling
    body = "\n".join(lines)
    write_body = (
        "local i = assert(io.open(source, 'rb')) local bytes = i:read('*a') i:close() "
        "local o = assert(io.open(target, 'wb')) o:write(bytes) o:close()"
        if write == "copy"
        else ""
    )
    prelude = f"""
        local source = [==[{path}]==]
        local record = [==[{record}]==]
        Association = {{Calling = [==[{association_calling}]==], Called = 'NMDOSE'}}
        Data = {{SOPClassUID = '{ds.SOPClassUID}', Modality = '{ds.Modality}',
                 SOPInstanceUID = '{ds.SOPInstanceUID}', PatientName = [==[{ds.PatientName}]==],
                 PatientID = [==[{ds.PatientID}]==]}}
        function Data:Write(target) {write_body} end
        function script(command)
          local f = assert(io.open(record, 'ab')) f:write(command, '\\n') f:close()
        end
        for run = 1, {runs} do
          {body}
          dofile([==[{script}]==])
        end
    """
    env = {k: v for k, v in os.environ.items() if k not in ("NMDOSE_ALLOWED_CALLING", "NMDOSE_SPOOL")}
    if env_allowed is not None:
        env["NMDOSE_ALLOWED_CALLING"] = env_allowed
    command = [LUA, "-e", prelude]
    if as_nobody:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0 and proc.stderr == "", (proc.stdout, proc.stderr)
    calls = record.read_text().splitlines() if record.exists() else []
    return proc, calls


def _spool(tmp: Path) -> Path:
    spool = tmp / "spool"
    for sub in ("incoming", "objects"):
        (spool / sub).mkdir(parents=True)
    return spool


def _left(spool: Path) -> list[Path]:
    """Every file the hook left in the spool, hidden tmp files included."""
    return sorted(
        p for sub in ("incoming", "objects") if (spool / sub).is_dir() for p in (spool / sub).iterdir()
    )


def _entries(spool: Path) -> list[Path]:
    return sorted((spool / "incoming").glob("*.job"))


# ----- import stage: the calling-AE check, nothing handed over


@needs_lua
@pytest.mark.parametrize("calling", ["ORTHANC", "ORTHANC   "], ids=["exact", "space-padded"])
def test_import_stage_lets_an_allowed_dose_object_through_and_hands_nothing_over(tmp, calling):
    """Before Conquest stores the object nothing is spooled: Conquest may still refuse it (issue 14 item 3)."""
    _, files = _pet_ct_study(tmp / "a")
    spool = _spool(tmp)
    for path in files:
        proc, calls = _run(path, spool, calling, "import")
        assert proc.stdout == "" and calls == [], (proc.stdout, calls)
    assert _left(spool) == []


@needs_lua
def test_import_stage_refuses_dose_objects_from_a_foreign_calling_ae(tmp):
    """A forged dose object: script('reject') (Conquest does not store it, the C-STORE fails) and one *** line
    (PacsTrouble.log) naming the AE title and the SOP Instance UID, never patient data."""
    study, files = _pet_ct_study(tmp / "b")
    spool = _spool(tmp)
    for path in files:  # CT RDSR, radiopharmaceutical RDSR, PET image
        proc, calls = _run(path, spool, "INTRUDER", "import")
        assert calls == ["reject"], (path.name, proc.stdout, calls)
        sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        (line,) = proc.stdout.splitlines()
        assert line.startswith("***") and "INTRUDER" in line and sop in line and "not stored" in line, line
        assert study.patient_name not in line and study.patient_id not in line
    # an object that is not a dose object is none of the hook's business, whoever sends it
    proc, calls = _run(_ct_image(study, tmp / "b" / "ct-image.dcm"), spool, "INTRUDER", "import")
    assert proc.stdout == "" and calls == []
    assert _left(spool) == []


@needs_lua
def test_import_stage_refuses_every_dose_object_without_the_allowed_calling_setting(tmp):
    """Secure by default: no NMDOSE_ALLOWED_CALLING (Lua global or environment), or an empty list."""
    _, files = _pet_ct_study(tmp / "c")
    spool = _spool(tmp)
    for calling in ("ORTHANC", "INTRUDER"):
        proc, calls = _run(files[1], spool, calling, "import", allowed=None)
        assert calls == ["reject"], (proc.stdout, calls)
        (line,) = proc.stdout.splitlines()
        assert line.startswith("***") and "NMDOSE_ALLOWED_CALLING is not set" in line and calling in line, (
            line
        )
    proc, calls = _run(files[1], spool, "ORTHANC", "import", allowed="{}")
    assert calls == ["reject"] and proc.stdout.startswith("***")


@needs_lua
def test_the_allowed_calling_list_comes_from_the_environment_when_dicom_ini_does_not_set_it(tmp):
    _, files = _pet_ct_study(tmp / "e")
    spool = _spool(tmp)
    env = "NMPACS, ORTHANC"
    proc, calls = _run(files[0], spool, "INTRUDER", "import", allowed=None, env_allowed=env)
    assert calls == ["reject"] and "INTRUDER" in proc.stdout
    proc, calls = _run(files[0], spool, "NMPACS", "import", allowed=None, env_allowed=env)
    assert proc.stdout == "" and calls == []
    proc, calls = _run(files[0], spool, "NMPACS", "export", allowed=None, env_allowed=env)
    assert proc.stdout == "" and calls == [] and len(_entries(spool)) == 1


# ----- export stage: the hand-over of what Conquest stored


@needs_lua
@pytest.mark.parametrize("calling", ["ORTHANC", "ORTHANC   "], ids=["exact", "space-padded"])
def test_export_stage_hands_over_a_byte_copy_of_the_stored_file(tmp, calling):
    _, files = _pet_ct_study(tmp / "x")
    spool = _spool(tmp)
    for path in files:
        proc, calls = _run(path, spool, calling, "export")
        assert proc.stdout == "" and calls == [], (proc.stdout, calls)
    entries = _entries(spool)
    assert len(entries) == 3 and len(_left(spool)) == 6  # three copies, three entries, no tmp files
    copies = []
    for entry in entries:
        text = entry.read_text()
        match = re.fullmatch(r"file=(.+)\nsource=conquest\nowned=1\n", text)
        assert match, text
        copy = Path(match.group(1))
        assert copy.parent == spool / "objects" and copy.suffix == ".dcm"
        copies.append(copy.read_bytes())
    assert sorted(copies) == sorted(p.read_bytes() for p in files)


@needs_lua
def test_export_stage_ignores_other_objects(tmp):
    study, _ = _pet_ct_study(tmp / "i")
    spool = _spool(tmp)
    proc, calls = _run(_ct_image(study, tmp / "i" / "ct-image.dcm"), spool, "ORTHANC", "export")
    assert proc.stdout == "" and calls == [] and _left(spool) == []


@needs_lua
def test_export_stage_never_hands_over_a_dose_object_from_a_foreign_calling_ae(tmp):
    """Defence in depth: an export line without its import line still hands over no forged object. The object
    is stored already: no reject, no defer, a *** line says so."""
    _, files = _pet_ct_study(tmp / "f")
    spool = _spool(tmp)
    proc, calls = _run(files[1], spool, "INTRUDER", "export")
    assert calls == [] and _left(spool) == []
    (line,) = proc.stdout.splitlines()
    assert line.startswith("*** ") and "INTRUDER" in line and "stored in Conquest" in line, line
    # Association.Calling is empty in Conquest's export queue: without NMDOSE_CALLING nothing is handed over
    proc, calls = _run(files[1], spool, "", "export")
    assert calls == [] and _left(spool) == [] and proc.stdout.startswith("***")


@needs_lua
def test_export_stage_reports_a_missing_spool_with_the_system_reason_and_defers(tmp):
    """Issue 14 item 4: one *** line (only those reach PacsTrouble.log) with the OS reason and the path, and
    script('defer'): Conquest keeps the object in its ExportFailures file and retries it."""
    _, files = _pet_ct_study(tmp / "m")
    spool = tmp / "no-such-spool"
    proc, calls = _run(files[0], spool, "ORTHANC", "export")
    (line,) = proc.stdout.splitlines()
    assert line.startswith("*** nmdose_import.lua: not handed over, Conquest retries later: cannot write ")
    assert str(spool / "objects") in line and line.endswith("No such file or directory"), line
    assert calls == ["defer"] and not spool.exists()


@needs_lua
@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv")
def test_export_stage_reports_a_spool_it_may_not_write_as_permission_denied(tmp):
    """EACCES is reported as such (it used to read "No such file or directory"); run as `nobody` when root."""
    _, files = _pet_ct_study(tmp / "p")
    spool = _spool(tmp)
    os.chmod(tmp, 0o777)  # the emulated script() records its commands next to the spool
    # `nobody` must read the stored file whatever umask an earlier test left in this process (the CLI sets 077)
    for folder, _, names in os.walk(tmp / "p"):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    os.chmod(spool / "objects", 0o555)
    os.chmod(spool / "incoming", 0o777)
    proc, calls = _run(files[0], spool, "ORTHANC", "export", as_nobody=os.geteuid() == 0)
    (line,) = proc.stdout.splitlines()
    assert (
        line.startswith("*** ") and str(spool / "objects") in line and line.endswith("Permission denied")
    ), line
    assert calls == ["defer"] and _left(spool) == []


@needs_lua
def test_export_stage_leaves_no_orphan_copy_when_the_entry_cannot_be_written(tmp):
    """The copy is written into objects/, the entry into incoming/ fails: the copy is removed (the worker would
    never see it), a *** line, and Conquest retries the whole hand-over later."""
    _, files = _pet_ct_study(tmp / "o")
    spool = tmp / "spool"
    (spool / "objects").mkdir(parents=True)  # incoming/ is missing
    proc, calls = _run(files[0], spool, "ORTHANC", "export")
    (line,) = proc.stdout.splitlines()
    assert line.startswith("*** ") and str(spool / "incoming") in line and "No such file" in line, line
    assert calls == ["defer"] and list((spool / "objects").iterdir()) == []


@needs_lua
def test_export_stage_does_not_defer_when_the_stored_file_is_gone(tmp):
    """Deleted from Conquest before the (re)try: the archive no longer holds it, so neither does the spool."""
    _, files = _pet_ct_study(tmp / "g")
    spool = _spool(tmp)
    proc, calls = _run(files[0], spool, "ORTHANC", "export", filename=str(tmp / "g" / "deleted.dcm"))
    (line,) = proc.stdout.splitlines()
    assert line.startswith("*** ") and "is gone" in line and calls == [] and _left(spool) == []


@needs_lua
def test_export_stage_without_filename_falls_back_to_data_write_and_checks_it(tmp):
    _, files = _pet_ct_study(tmp / "w")
    spool = _spool(tmp)
    proc, calls = _run(files[1], spool, "ORTHANC", "export", filename=None)
    assert proc.stdout == "" and calls == []
    (entry,) = _entries(spool)
    copy = Path(entry.read_text().split("\n")[0].removeprefix("file="))
    assert copy.read_bytes() == files[1].read_bytes()
    # Conquest's Data:Write says nothing when it fails: an empty copy is an error, not a hand-over
    spool2 = _spool(tmp / "second")
    proc, calls = _run(files[1], spool2, "ORTHANC", "export", filename=None, write="nothing")
    assert "Data:Write wrote nothing" in proc.stdout and calls == ["defer"] and _left(spool2) == []


@needs_lua
def test_names_are_drawn_from_a_generator_seeded_per_lua_state(tmp):
    """Conquest never seeds math.random: unseeded, every fresh Lua state draws the same numbers, so names
    would repeat after each restart. Five states handing over the same object: five different draws."""
    _, files = _pet_ct_study(tmp / "s")
    spool = _spool(tmp)
    for _ in range(5):
        _run(files[0], spool, "ORTHANC", "export")
    draws = {entry.stem.rsplit("-", 1)[1] for entry in _entries(spool)}
    assert len(_entries(spool)) == 5 and len(draws) == 5, draws
    # one state handing over several objects (Conquest's export queue) seeds once and draws on
    spool2 = _spool(tmp / "one-state")
    proc, _calls = _run(files[0], spool2, "ORTHANC", "export", runs=3)
    assert proc.stdout == "" and len({e.stem.rsplit("-", 1)[1] for e in _entries(spool2)}) == 3


@needs_lua
def test_a_line_without_nmdose_stage_says_so_once_per_lua_state(tmp):
    _, files = _pet_ct_study(tmp / "n")
    spool = _spool(tmp)
    proc, calls = _run(files[0], spool, "ORTHANC", None, runs=2)
    (line,) = proc.stdout.splitlines()
    assert line.startswith("*** ") and "NMDOSE_STAGE" in line and "taken as import" in line
    assert calls == [] and _left(spool) == []


# ----- the dicom.ini fragment, run as Conquest runs its lines


def _converter_code(key: str, stored: Path, calling: str) -> str:
    """The Lua code of a conquest/dicom.ini converter line after Conquest's %-substitution (%f: the stored
    file, %u: the calling AE title)."""
    line = next(ln for ln in (REPO / "conquest" / "dicom.ini").read_text().splitlines() if ln.startswith(key))
    assert len(line.split("=", 1)[1].strip()) < 500  # Conquest reads at most 511 characters of a line
    code = line.split("=", 1)[1].strip().removeprefix("lua:")
    assert '"' not in code  # Conquest treats double quotes specially in converter lines
    assert set(re.findall(r"%.", code)) <= {"%f", "%u"}, code  # every other % would be substituted
    return (
        code.replace("%f", str(stored))
        .replace("%u", calling)
        .replace("/opt/nmdose/conquest/lua/nmdose_import.lua", str(SCRIPT))
    )


@needs_lua
def test_the_dicom_ini_lines_refuse_a_foreign_sender_and_hand_over_the_research_pacs_objects(tmp):
    text = (REPO / "conquest" / "dicom.ini").read_text()
    assert re.search(
        r"^ExportConverters\s*=\s*1\s*$", text, re.M
    )  # a stock dicom.ini has 0: the line never runs
    _, files = _pet_ct_study(tmp / "d")
    spool = _spool(tmp)
    ds = dcmread(files[1], stop_before_pixels=True)
    for calling, key in (("INTRUDER", "ImportConverter0"), ("ORTHANC", "ImportConverter0"),
                         ("ORTHANC", "ExportConverter0")):  # fmt: skip
        code = _converter_code(key, files[1], calling).replace("'/var/spool/nmdose/dose'", f"[==[{spool}]==]")
        record = tmp / f"{key}-{calling}.calls"
        prelude = f"""
            Association = {{Calling = [==[{calling if key.startswith("Import") else ""}]==]}}
            Data = {{SOPClassUID = '{ds.SOPClassUID}', Modality = '{ds.Modality}',
                     SOPInstanceUID = '{ds.SOPInstanceUID}'}}
            function script(command) local f = assert(io.open([==[{record}]==], 'ab')) f:write(command) f:close() end
        """
        proc = subprocess.run([LUA, "-e", prelude + code], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        calls = record.read_text() if record.exists() else ""
        if calling == "INTRUDER":
            assert calls == "reject" and proc.stdout.startswith("***")
        else:
            assert calls == "" and proc.stdout == "", (key, proc.stdout)
    (entry,) = _entries(spool)
    copy = Path(entry.read_text().split("\n")[0].removeprefix("file="))
    assert copy.read_bytes() == files[1].read_bytes()


@needs_lua
def test_the_export_stage_hand_over_is_drained_by_the_worker(stack, tmp):
    """End to end without Conquest: the export stage's entries ingest, copies deleted, source 'conquest'."""
    from contextlib import closing

    from nmdose.db import connect

    study, files = _pet_ct_study(tmp / "k")
    spool = _spool(tmp)
    for path in [*files, _ct_image(study, tmp / "k" / "ct-image.dcm")]:
        proc, calls = _run(path, spool, "ORTHANC", "export")
        assert proc.stdout == "" and calls == [], (proc.stdout, calls)
    assert len(_entries(spool)) == 3  # the CT image was ignored
    assert main([*stack.cli_args(), "dose", "worker", "--once", "--spool", str(spool)]) == 0
    assert _entries(spool) == [] and not list((spool / "objects").glob("*.dcm"))
    with closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), array_agg(DISTINCT source) FROM dose.object WHERE study_instance_uid = %s",
            (study.study_instance_uid,),
        )
        assert cur.fetchone() == (3, ["conquest"])


@needs_lua
def test_respool_hands_over_the_archived_dose_objects_again(tmp):
    """conquest/lua/nmdose_respool.lua with Conquest's dbquery/gpps emulated: every dose object among the rows is
    handed over as a byte copy of its stored file (no calling-AE check: the archive admitted it), other objects
    are not, a row whose file is gone or on an unknown device is a *** line, and a summary line counts them."""
    study, files = _pet_ct_study(tmp / "r" / "MAG")
    ct_image = _ct_image(study, tmp / "r" / "MAG" / "ct-image.dcm")
    spool = _spool(tmp)
    rows, series = [], {}
    for path, device in [*((p, "MAG0") for p in files), (ct_image, "MAG0"), (files[0], "CACHE0")]:
        ds = dcmread(path, stop_before_pixels=True)
        rows.append(
            [str(ds.SOPInstanceUID), str(ds.SOPClassUID), path.name, device, str(ds.SeriesInstanceUID)]
        )
        series[str(ds.SeriesInstanceUID)] = str(ds.Modality)
    rows.append(["1.2.3.4", "1.2.840.10008.5.1.4.1.1.88.68", "deleted.dcm", "MAG0", "1.2.3"])
    series["1.2.3"] = "SR"
    lua_rows = ", ".join("{" + ", ".join(f"'{v}'" for v in row) + "}" for row in rows)
    lua_series = ", ".join(f"['{k}'] = '{v}'" for k, v in series.items())
    prelude = f"""
        local rows, series = {{{lua_rows}}}, {{{lua_series}}}
        function gpps(section, key, default)
          if section == 'sscscp' and key == 'MAGDevice0' then return [==[{tmp / "r" / "MAG"}/]==] end
          return default
        end
        function dbquery(tbl, fields, where)
          if tbl == 'DICOMImages' then assert(string.match(where, '^AccessTime >= %d+$'), where) return rows end
          return {{{{series[string.match(where, "'(.*)'")]}}}}
        end
        NMDOSE_HOURS = 2
        NMDOSE_SPOOL = [==[{spool}]==]
        dofile([==[{REPO / "conquest" / "lua" / "nmdose_respool.lua"}]==])
    """
    proc = subprocess.run([LUA, "-e", prelude], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == (
        "nmdose_respool.lua: 6 objects stored in the last 2 hours: 3 dose objects handed over, 1 others, 2 failed"
    ), lines
    assert sum("***" in ln and "is gone" in ln for ln in lines) == 1
    assert sum("***" in ln and "CACHE0" in ln for ln in lines) == 1
    copies = sorted(
        Path(e.read_text().split("\n")[0].removeprefix("file=")).read_bytes() for e in _entries(spool)
    )
    assert copies == sorted(p.read_bytes() for p in files)
