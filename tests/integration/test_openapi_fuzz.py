"""Fuzz every `/nmdose/` route of a running research PACS with schemathesis, from the OpenAPI description the
plugin serves (`GET /nmdose/api/openapi.json`, web/openapi.py): whatever the generated query, path or body, no
answer is a 5xx (the check `not_a_server_error`). Its own stack: the write routes queue real census, retrieval
and forwarding jobs, which must not reach the other tests' shared stack."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import RunningStack

pytestmark = pytest.mark.integration

ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = 12  # per operation and phase; ~40 operations: a couple of thousand requests, about a minute


@pytest.fixture(scope="module")
def research():
    running = RunningStack()
    try:
        yield running
    finally:
        running.close()


def test_the_served_description_covers_the_plugins_routes(research):
    base = f"{research.cfg.research_node.http_url}/nmdose"
    r = requests.get(f"{base}/api/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert "/api/dose/box" in doc["paths"] and "/census" in doc["paths"]
    assert doc["paths"]["/census"]["post"]["x-permission"] == "census:run"
    # The bug this fuzzing first found: a JSON list as the body of POST /census answered 500.
    r = requests.post(f"{base}/census", data="[]", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400, r.text
    assert "body must be object" in r.json()["error"]


def test_no_route_answers_a_server_error_to_generated_requests(research, tmp_path):
    base = f"{research.cfg.research_node.http_url}/nmdose"
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(requests.get(f"{base}/api/openapi.json", timeout=10).json()))
    cmd = [
        str(ST),
        "run",
        str(schema),
        "--url",
        base,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "15",
        "--workers",
        "2",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        # /health answers 503 by design when the plugin is degraded, and the fuzzing makes it so (forwarding
        # jobs queued for studies the PACS does not hold): a status, not a crash. Checked on its own below.
        "--exclude-path",
        "/health",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    # It really ran: every operation of the description but /health was exercised, with many requests.
    ops = sum(len(v) for v in json.loads(schema.read_text())["paths"].values())
    assert ops >= 30
    tested = re.search(r"Tested:\s+(\d+)", out)
    assert tested and int(tested.group(1)) == ops - 1, out[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and int(cases.group(1)) >= 20 * ops and cases.group(1) == cases.group(2), out[-3000:]


def test_health_answers_200_or_the_designed_503_with_its_reasons(research):
    r = requests.get(f"{research.cfg.research_node.http_url}/nmdose/health", timeout=10)
    assert r.status_code in (200, 503), r.text
    body = r.json()
    assert body["status"] == ("ok" if r.status_code == 200 else "degraded")
    if r.status_code == 503:
        assert body["problems"], body
