"""The REST client of the Orthanc nodes ignores the environment's web proxy (issue 18): hospital servers often
set HTTP_PROXY for the internet, and a loopback or hospital-network Orthanc must never be asked through it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nmdose.errors import PacsError
from nmdose.pacs.orthanc_http import OrthancHttp


class _System(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"Version": "1.10.1", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def orthanc_like():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _System)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_proxy_in_the_environment_is_not_used_for_an_orthanc_node(orthanc_like, monkeypatch):
    # a proxy that answers nothing: had the client used it, the call would fail
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert OrthancHttp(orthanc_like, timeout_s=5).get("/system") == {"Version": "1.10.1", "path": "/system"}


def test_an_unreachable_node_is_still_a_clear_error(monkeypatch):
    with pytest.raises(PacsError, match="REST API unreachable at http://127.0.0.1:9"):
        OrthancHttp("http://127.0.0.1:9", name="researchPACS", timeout_s=2).get("/system")
