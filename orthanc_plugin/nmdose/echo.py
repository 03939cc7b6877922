"""`nmdose echo`: C-ECHO every node from the research PACS (Orthanc REST) and with DCMTK echoscu directly.

For a node with `tls: true` both associations run over TLS (Orthanc's UseDicomTls, echoscu +tls), and a TLS
handshake as our tools make it reads the node's certificate: its subject and expiry are shown, and a certificate
expiring within 30 days is a warning."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass

from nmdose.config import Config
from nmdose.errors import NmdoseError, PacsError
from nmdose.pacs.dcmtk import echoscu
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.security import tls


@dataclass
class EchoResult:
    node: str
    aet: str
    address: str
    orthanc: str  # ok | FAILED: reason | n/a
    orthanc_ms: float | None
    echoscu: str
    echoscu_ms: float | None
    tls: bool = False
    peer_certificate: dict | None = None  # subject, issuer, not_after, days_left, warning (TLS nodes)
    tls_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.orthanc in ("ok", "n/a (self)") and self.echoscu == "ok" and not self.tls_error

    @property
    def warning(self) -> str | None:
        return (self.peer_certificate or {}).get("warning")


def echo_nodes(cfg: Config, nodes: list[str] | None = None, *, timeout_s: float = 5) -> list[EchoResult]:
    """Echo the active nodes (never the clinical PACS in simulation mode unless named explicitly)."""
    selected = {n: cfg.nodes[n] for n in nodes} if nodes else cfg.active_nodes()
    research = cfg.research_node
    rest = OrthancHttp.for_node(cfg, research.name, timeout_s=timeout_s + 5) if research.http_url else None
    results = []
    for name, node in selected.items():
        if name == "researchPACS":
            o_state, o_ms = "n/a (self)", None
        elif rest is None:
            o_state, o_ms = "n/a (no REST)", None
        else:
            started = time.monotonic()
            try:
                rest.post(f"/modalities/{name}/echo", {"Timeout": int(timeout_s)})
                o_state = "ok"
            except PacsError as exc:
                o_state = f"FAILED: {exc}"
            o_ms = round((time.monotonic() - started) * 1000, 1)
        try:
            tls_args = tls.dcmtk_args(cfg, node)
        except NmdoseError as exc:
            results.append(EchoResult(name, node.aet, node.address, o_state, o_ms, f"FAILED: {exc}", None,
                                      node.tls, None, str(exc)))  # fmt: skip
            continue
        tool = echoscu(cfg.local_aet, node.aet, node.host, node.port, timeout_s=timeout_s, tls_args=tls_args)
        if tool.ok:
            e_state = "ok"
        else:
            lines = [ln for ln in (tool.stderr + tool.stdout).splitlines() if ln.strip()]
            e_state = "FAILED: " + (lines[-1].strip() if lines else f"exit code {tool.returncode}")
        result = EchoResult(name, node.aet, node.address, o_state, o_ms, e_state, round(tool.seconds * 1000, 1),
                            node.tls)  # fmt: skip
        if node.tls:
            try:
                result.peer_certificate = tls.probe(cfg, node, timeout_s=timeout_s).as_dict()
            except (OSError, ValueError, NmdoseError) as exc:
                result.tls_error = f"TLS handshake failed: {exc}"[:300]
        results.append(result)
    return results


def register(sub) -> None:
    p = sub.add_parser("echo", help="C-ECHO every configured node (through Orthanc and with echoscu)")
    p.add_argument("nodes", nargs="*", help="node names (default: the nodes active in this mode)")
    p.add_argument("--timeout", type=float, default=5, help="seconds per echo (default: %(default)s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_echo)
    register_health(sub)


def register_health(sub) -> None:
    p = sub.add_parser("health", help="the research PACS plugin's /nmdose/health answer")
    p.add_argument("--wait", type=float, default=30, help="seconds to wait for it to become ok")
    p.set_defaults(func=cmd_health)


def cmd_health(args, ctx) -> int:
    node = ctx.config.research_node
    rest = OrthancHttp.for_node(ctx.config, node.name, timeout_s=10)
    deadline = time.monotonic() + args.wait
    while True:
        response = rest.session.get(f"{rest.base}/nmdose/health", timeout=10) if _up(rest) else None
        data = response.json() if response is not None and response.content else {}
        if data.get("status") == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not data:
        raise PacsError(f"researchPACS: {node.http_url}/nmdose/health did not answer (is the stack up?)")
    print(json.dumps(data, indent=2))
    return 0 if data.get("status") == "ok" else 1


def _up(rest: OrthancHttp) -> bool:
    try:
        rest.get("/system")
        return True
    except PacsError:
        return False


def cmd_echo(args, ctx) -> int:
    cfg = ctx.config
    for name in args.nodes:
        if name not in cfg.nodes:
            from nmdose.errors import ConfigError

            raise ConfigError(f"unknown node {name!r}: expected one of {', '.join(cfg.nodes)}")
    results = echo_nodes(cfg, args.nodes or None, timeout_s=args.timeout)
    if args.json:
        print(json.dumps([asdict(r) | {"ok": r.ok, "warning": r.warning} for r in results], indent=2))
    else:
        print(f"{'node':16} {'AET':16} {'address':22} {'via research PACS':28} {'echoscu':28} tls")
        for r in results:
            o = r.orthanc + (
                f" {r.orthanc_ms:.0f} ms" if r.orthanc_ms is not None and r.orthanc == "ok" else ""
            )
            e = r.echoscu + (f" {r.echoscu_ms:.0f} ms" if r.echoscu == "ok" else "")
            print(f"{r.node:16} {r.aet:16} {r.address:22} {o[:60]:28} {e[:80]:28} {_tls_text(r)}")
    for r in results:
        if r.warning:
            print(f"nmdose: warning: {r.node}: {r.warning}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def _tls_text(r: EchoResult) -> str:
    if not r.tls:
        return "no (plaintext)"
    if r.tls_error:
        return f"yes, {r.tls_error}"
    cert = r.peer_certificate or {}
    return f"yes, peer {cert.get('subject')}, expires {cert.get('not_after')} ({cert.get('days_left')} days)"
