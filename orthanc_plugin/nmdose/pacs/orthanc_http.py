"""Orthanc's REST API over HTTP (from the CLI, and from plugin worker threads over loopback, which releases
the GIL while waiting instead of holding it as `orthanc.RestApi*` does on plugin 4.0).

Hand-written on `requests` rather than pyorthanc: nmdose calls about a dozen routes (`/system`, `/tools/find`,
`/studies`, `/modalities/{id}/query|echo`, `/queries/...`, `/jobs/...`, `/instances/...`) and needs what a
generated client does not give in one place: each node's own timeout on every call, the internal credential
header of the research PACS's gate (`for_node`), every failure as nmdose's `PacsError`/`PacsTimeout` carrying
Orthanc's own `Details`, and C-FIND with `"Normalize": false` whose query is deleted afterwards. pyorthanc
would add httpx and a client generated for the whole API (over a thousand routes) to the interpreter Orthanc
embeds, for those dozen calls; `requests` is there already.
"""

from __future__ import annotations

import contextlib
from typing import Any

import requests

from nmdose.errors import PacsError, PacsTimeout


class OrthancHttp:
    def __init__(
        self,
        base_url: str,
        *,
        name: str = "orthanc",
        timeout_s: float = 60,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ):
        self.base = base_url.rstrip("/")
        self.name = name
        self.timeout_s = timeout_s
        self.session = requests.Session()
        # The Orthanc nodes are on loopback or the hospital network, never behind a web proxy: the environment's
        # HTTP(S)_PROXY (set on many hospital servers for the internet) must not take these requests, and
        # requests would otherwise read the environment and stat ~/.netrc on every call (~1 ms each, issue 18).
        self.session.trust_env = False
        self.session.headers.update(headers or {})
        if auth:
            self.session.auth = auth

    @classmethod
    def for_node(
        cls, cfg, name: str, *, timeout_s: float | None = None, extra_timeout_s: float = 0
    ) -> OrthancHttp:
        """The REST API of a configured Orthanc node; for the research PACS in keycloak mode with the internal
        credential its gate admits (nmdose.security.internal). Timeout: `timeout_s`, else the node's + `extra_timeout_s`."""
        from nmdose.security.internal import internal_headers

        node = cfg.nodes[name]
        if not node.http_url:
            raise PacsError(f"{name}: no http_port configured (needed for its REST API)")
        headers = internal_headers(cfg) if name == cfg.research_node.name else {}
        return cls(
            node.http_url, name=name, timeout_s=timeout_s or node.timeout_s + extra_timeout_s, headers=headers
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict | None = None,
        timeout_s: float | None = None,
    ) -> requests.Response:
        url = f"{self.base}{path}"
        try:
            response = self.session.request(
                method, url, json=json_body, data=data, params=params, timeout=timeout_s or self.timeout_s
            )
        except requests.Timeout:
            raise PacsTimeout(
                f"{self.name}: {method} {path} timed out after {timeout_s or self.timeout_s} s"
            ) from None
        except requests.ConnectionError:
            raise PacsError(f"{self.name}: REST API unreachable at {self.base}") from None
        if response.status_code >= 400:
            detail = response.text.strip()
            try:
                body = response.json()
                detail = body.get("Details") or body.get("Message") or body.get("error") or detail
            except ValueError:
                pass
            raise PacsError(f"{self.name}: {method} {path} -> HTTP {response.status_code}: {detail[:500]}")
        return response

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, body: Any = None, **kw) -> Any:
        response = self.request("POST", path, json_body=body, **kw)
        return response.json() if response.content else None

    def delete(self, path: str, **kw) -> None:
        self.request("DELETE", path, **kw)

    def cfind(
        self,
        modality: str,
        level: str,
        query: dict[str, str],
        *,
        timeout_s: float | None = None,
        dicom_timeout_s: float | None = None,
    ) -> list:
        """C-FIND through Orthanc (`/modalities/{id}/query`, `"Normalize": false` so no tag is dropped), answers
        expanded and simplified; the query is deleted afterwards (Orthanc keeps only the 100 newest)."""
        body: dict[str, Any] = {"Level": level, "Query": query, "Normalize": False}
        if dicom_timeout_s is not None:
            body["Timeout"] = int(dicom_timeout_s)
        created = self.post(f"/modalities/{modality}/query", body, timeout_s=timeout_s)
        try:
            return self.get(f"/queries/{created['ID']}/answers", params={"expand": "", "simplify": ""})
        finally:
            with contextlib.suppress(PacsError):
                self.delete(f"/queries/{created['ID']}")
