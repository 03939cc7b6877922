"""``nmdose dose parse``: JSON Lines, the human table, exit status."""

from __future__ import annotations

import json

from nmdose.cli import main
from nmdose.simulate import rdsr as R


def test_parse_json_prints_one_object_per_file_and_goes_on_after_a_bad_file(files, tmp_path, capsys):
    good = files.ct([R.CtAcquisition(ctdivol_mgy=12.3)])
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom")
    pet = files.image("PT")
    code = main(["dose", "parse", str(good), str(bad), str(pet), "--json"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    objs = [json.loads(line) for line in lines]
    assert [o["status"] for o in objs] == ["ok", "error", "ok"]
    assert objs[0]["ct"]["events"][0]["ctdivol_mgy"] == 12.3
    assert objs[2]["radiopharmaceutical"][0]["activity_mbq"] == 370.0


def test_parse_exits_zero_when_every_file_is_ok_or_not_dose(files, capsys):
    code = main(["dose", "parse", str(files.ct()), str(files.rrdsr())])
    out = capsys.readouterr().out
    assert code == 0
    assert "ct_rdsr" in out and "radiopharmaceutical_rdsr" in out
