"""`nmdose simulate` without a PACS, and the upload's argument handling."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest

from nmdose.orthanc_ids import orthanc_study_id
from nmdose.simulate import cli
from nmdose.simulate.upload import Target, UploadError, upload


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


def test_simulate_no_upload_writes_default_folder_and_prints_summary(tmp_path, capsys):
    ctx = SimpleNamespace(config=SimpleNamespace(var_dir=tmp_path, nodes={}))
    args = _args(["--studies", "3", "--years", "2", "--seed", "9", "--today", "2025-01-31", "--no-upload"])
    assert args.func(args, ctx) == 0
    out = capsys.readouterr()
    assert (tmp_path / "simulation" / "seed9" / "manifest.json").exists()
    assert "simulation seed 9: 3 studies" in out.out
    assert "mess planted" in out.out and "not uploaded" in out.out
    assert "generate: 3/3" in out.err  # plain progress lines when not on a terminal


def test_simulate_json(tmp_path, capsys):
    ctx = SimpleNamespace(config=SimpleNamespace(var_dir=tmp_path, nodes={}))
    args = _args(["--studies", "2", "--seed", "4", "--out", str(tmp_path / "x"), "--no-upload", "--json"])
    assert args.func(args, ctx) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["studies"] == 2 and data["upload"] is None


def test_upload_to_a_pacs_that_is_not_running_fails_with_one_clear_line(tmp_path):
    from nmdose.ports import free_port

    port = free_port()
    (tmp_path / "a.dcm").write_bytes(b"")
    node = SimpleNamespace(aet="NMFULLDATA", host="127.0.0.1", port=port, http_url=f"http://127.0.0.1:{port}")
    with pytest.raises(UploadError, match="not answering at http://127.0.0.1"):
        upload(tmp_path, node)


def test_target_from_node_url_or_tuple():
    node = SimpleNamespace(
        aet="NMFULLDATA", host="h", port=5680, http_url="http://h:8680", name="simulationPACS"
    )
    assert Target.of(node) == Target("NMFULLDATA", "h", 5680, "http://h:8680")
    assert Target.of("http://h:8680/").http_url == "http://h:8680"
    assert Target.of(("h", 104, "NMPACS")) == Target("NMPACS", "h", 104)


def test_orthanc_study_id_is_sha1_of_patient_and_study():
    ident = orthanc_study_id("SIM000001", "1.2.3")
    assert len(ident) == 44 and ident.count("-") == 4
