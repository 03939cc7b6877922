"""The local stack on free ports: up, status, idempotent up/down, clear errors; health route; echo."""

import json
import os
import signal
import socket
import time

import pytest
import requests

from nmdose.cli import main
from nmdose.errors import StackError
from nmdose.stack import Stack, _cmdline, _pid_alive
from tests.support import RunningStack, load, make_config_dir, make_tempdir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack():
    """A stack this module may stop and restart (the session one stays untouched)."""
    running = RunningStack()
    yield running
    running.close()


def test_stack_up_starts_every_local_node_and_the_dose_worker(own_stack, capsys):
    assert main([*own_stack.cli_args(), "stack", "status", "--json"]) == 0
    rows = {r["node"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["postgresql", "simulationPACS", "researchPACS", "dosePACS", "dose-worker"]
    assert all(r["state"] == "running" and r["pid"] for r in rows.values())
    worker = rows["dose-worker"]
    assert worker["kind"] == "worker" and worker["log"].endswith("dose-worker.log")
    assert worker["address"] == f"spool {own_stack.cfg.dose_spool}"
    assert "dose worker" in _cmdline(worker["pid"]) and str(own_stack.cfg.var_dir) in _cmdline(worker["pid"])
    assert main([*own_stack.cli_args(), "stack", "status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 6 and table[-1].split()[:3] == ["dose-worker", "running", str(worker["pid"])]
    for name in ("simulationPACS", "researchPACS", "dosePACS"):
        node = own_stack.cfg.nodes[name]
        system = requests.get(f"{node.http_url}/system", timeout=5).json()
        assert system["DicomAet"] == node.aet and system["DicomPort"] == node.port


def test_research_pacs_uses_the_postgresql_index(own_stack):
    plugins = requests.get(f"{own_stack.cfg.research_node.http_url}/plugins", timeout=5).json()
    assert "postgresql-index" in plugins and "python" in plugins
    from contextlib import closing

    from nmdose.db import connect

    with (
        closing(connect(own_stack.cfg, own_stack.cfg.postgresql.orthanc_database, role="orthanc")) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'resources'")
        assert cur.fetchone()[0] == 1


def test_stack_up_twice_keeps_the_same_processes(own_stack):
    before = {r.node: r.pid for r in own_stack.stack.status()}
    own_stack.stack.up()
    assert {r.node: r.pid for r in own_stack.stack.status()} == before


def test_echo_reports_a_node_that_is_down_without_crashing(own_stack, capsys):
    own_stack.stack.orthanc_down("dosePACS")
    try:
        assert main([*own_stack.cli_args(), "echo", "--json", "--timeout", "3"]) == 1
        rows = {r["node"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["dosePACS"]["ok"] is False
        assert rows["dosePACS"]["orthanc"].startswith("FAILED") and rows["dosePACS"]["echoscu"].startswith(
            "FAILED"
        )
        assert rows["simulationPACS"]["ok"] and rows["researchPACS"]["ok"]
        assert "clinicalPACS" not in rows  # never contacted in simulation mode
    finally:
        own_stack.stack.orthanc_up("dosePACS")
    assert main([*own_stack.cli_args(), "echo"]) == 0


def test_a_dead_dose_worker_shows_as_stale_and_up_restarts_it(own_stack, capsys):
    old = own_stack.stack.dose_worker_status().pid
    os.kill(old, signal.SIGTERM)  # the worker this module's stack started
    deadline = time.monotonic() + 30
    while _pid_alive(old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert main([*own_stack.cli_args(), "stack", "status", "--json"]) == 3
    row = json.loads(capsys.readouterr().out)[-1]
    assert (row["node"], row["state"], row["pid"]) == ("dose-worker", "stale", None)
    own_stack.stack.up()
    new = own_stack.stack.dose_worker_status()
    assert new.state == "running" and new.pid != old


def test_no_local_dose_pacs_means_no_dose_worker_row(tmp_path):
    cfg = load(make_config_dir(tmp_path, nodes={"dosePACS": {"local": False}}))
    assert [r.node for r in Stack(cfg).status()] == ["postgresql", "simulationPACS", "researchPACS"]


def test_stack_down_stops_everything_and_is_safe_to_repeat(own_stack, capsys):
    pids = [r.pid for r in own_stack.stack.status()]
    assert main([*own_stack.cli_args(), "stack", "down"]) == 0
    assert (
        "stopped: dose-worker, dosePACS, researchPACS, simulationPACS, postgresql" in capsys.readouterr().out
    )
    assert all(r.state == "stopped" for r in own_stack.stack.status())
    assert not any(_pid_alive(pid) for pid in pids)
    assert main([*own_stack.cli_args(), "stack", "down"]) == 0
    assert "nothing was running" in capsys.readouterr().out
    assert main([*own_stack.cli_args(), "stack", "status"]) == 3
    # and it comes back with its data (PostgreSQL is not initialised twice)
    own_stack.stack.up()
    assert all(r.state == "running" for r in own_stack.stack.status())


def test_busy_port_is_a_clear_error_naming_node_port_and_log():
    root = make_tempdir()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    cfg = load(make_config_dir(root, nodes={"dosePACS": {"port": port}}))
    stack = Stack(cfg)
    try:
        with pytest.raises(StackError) as exc:
            stack.up()
        msg = str(exc.value)
        assert f"dosePACS: DICOM port 127.0.0.1:{port} is busy" in msg and "dosePACS.log" in msg
    finally:
        blocker.close()
        stack.down()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_missing_orthanc_binary_is_a_clear_error(monkeypatch):
    import nmdose.stack as st

    monkeypatch.setattr(st.shutil, "which", lambda name: None)
    monkeypatch.setattr(st, "Path", lambda p: type("P", (), {"exists": lambda self: False})())
    with pytest.raises(StackError, match="Orthanc binary not found: run `make deps`"):
        st.find_orthanc()


def test_health_route_reports_database_migrations_and_workers(stack):
    url = f"{stack.cfg.research_node.http_url}/nmdose/health"
    data = None
    for _ in range(50):  # the plugin migrates and starts its workers in the background after Orthanc starts
        r = requests.get(url, timeout=5)
        data = r.json()
        if data["status"] == "ok":
            break
        import time

        time.sleep(0.2)
    assert r.status_code == 200, data
    assert data["database"] == "ok"
    assert data["migrations"]["ok"] and data["migrations"]["pending"] == []
    assert data["workers"]["alive"] == data["workers"]["expected"] == 2
    assert data["versions"]["orthanc"] == "1.10.1" and data["versions"]["python_plugin"] == "4.0"


def test_unknown_plugin_route_is_a_json_404(stack):
    r = requests.get(f"{stack.cfg.research_node.http_url}/nmdose/nope", timeout=5)
    assert r.status_code == 404 and "no such nmdose route" in r.text


def test_echo_every_active_node(stack, capsys):
    assert main([*stack.cli_args(), "echo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["node"] for r in rows] == ["simulationPACS", "researchPACS", "dosePACS"]
    assert all(r["ok"] and r["echoscu_ms"] > 0 for r in rows)


def test_node_orthanc_settings_reach_the_generated_configuration(tmp_path):
    cfg = load(
        make_config_dir(
            tmp_path,
            nodes={"researchPACS": {"orthanc_settings": {"StableAge": 3}}},
            env={"NMDOSE_DB_PASSWORD": "test-only"},
        )
    )
    conf = Stack(cfg).orthanc_config("researchPACS")
    assert conf["StableAge"] == 3 and conf["DicomAet"] == "ORTHANC"
    buttons = conf["OrthancExplorer2"]["UiOptions"]["CustomButtons"]["study"]
    assert any(b["Url"].endswith("/nmdose/ui/study/{StudyInstanceUID}") for b in buttons)


def test_stack_up_closes_an_older_var_to_other_users():
    """An install made before umask 077: world-readable storage, logs and folders are tightened once; var/ lets
    only the postgres group through (as root) and the CLI itself runs with umask 077."""
    import shutil
    import stat

    root = make_tempdir()
    try:
        cfg = load(make_config_dir(root))
        var = cfg.var_dir
        storage = var / "orthanc" / "researchPACS" / "storage" / "ab"
        storage.mkdir(parents=True)
        (var / "log").mkdir()
        old_files = [
            storage / "abcdef",
            var / "log" / "census.log",
            var / "orthanc" / "researchPACS" / "orthanc.json",
        ]
        for f in old_files:
            f.write_text("patient data")
            os.chmod(f, 0o644)
        for d in (var, storage, storage.parent, var / "log"):
            os.chmod(d, 0o755)
        Stack(cfg).secure_var()
        for f in old_files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        for d in (storage, storage.parent, var / "orthanc", var / "run"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        expected = 0o710 if os.geteuid() == 0 else 0o700
        assert stat.S_IMODE(var.stat().st_mode) == expected
        assert stat.S_IMODE((var / "log").stat().st_mode) == expected
        # a file made later with permissive bits is not walked again (once), but the folders stay closed
        assert (var / "run" / ".modes-077").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_command_line_runs_with_umask_077(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    capsys.readouterr()
    previous = os.umask(0o077)
    assert previous == 0o077
