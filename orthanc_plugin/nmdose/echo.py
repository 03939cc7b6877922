"""`nmdose echo`: C-ECHO every node from the research PACS (Orthanc REST) and with DCMTK echoscu directly.

For a node with `tls: true` both associations run over TLS (Orthanc's UseDicomTls, echoscu +tls), and a TLS
handshake as our tools make it reads the node's certificate: its subject and expiry are shown, and a certificate
expiring within 30 days is a warning.

The dose PACS is also asked whether it accepts each dose SR class (`DOSE_SR_CLASSES`): one association proposing
one presentation context per class, released at once, nothing sent (issue 14: a stock Conquest has no
Radiopharmaceutical Radiation Dose SR in its dgatesop.lst and refuses every RRDSR association). DCMTK 3.6.7 has no
tool for this: echoscu proposes Verification only, and storescu proposes a configured list (`-xf`) only to send
files, so it would store objects in the dose PACS; pynetdicom is a test dependency. The A-ASSOCIATE-RQ is therefore
built here (PS3.8 section 9.3; a few dozen bytes), over TLS for a `tls: true` node with the same client
certificate and CA as DCMTK's `+tls` options (`nmdose.security.tls.client_context`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass

from nmdose.config import Config
from nmdose.errors import NmdoseError, PacsError
from nmdose.pacs.dcmtk import echoscu
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.security import tls
from nmdose.sop_classes import ECHO_DOSE_SR_CLASSES


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
    # the dose PACS: one row per dose SR class (uid, name, accepted, result); None for the other nodes
    dose_sr_classes: list[dict] | None = None
    dose_sr_error: str | None = None  # the negotiation itself failed (no association at all)

    @property
    def refused_dose_sr_classes(self) -> list[dict]:
        return [c for c in self.dose_sr_classes or [] if not c["accepted"]]

    @property
    def ok(self) -> bool:
        return (
            self.orthanc in ("ok", "n/a (self)", NOT_A_PEER)
            and self.echoscu == "ok"
            and not self.tls_error
            and not self.dose_sr_error
            and not self.refused_dose_sr_classes
        )

    @property
    def warning(self) -> str | None:
        return (self.peer_certificate or {}).get("warning")


NOT_A_PEER = "n/a (not its peer)"


def _research_peers(rest: OrthancHttp | None) -> set[str] | None:
    """The nodes the research PACS has as DICOM peers (its security profile registers only those; None: not
    known, every node is tried)."""
    if rest is None:
        return None
    try:
        return set(rest.get("/modalities"))
    except PacsError:
        return None


def echo_nodes(cfg: Config, nodes: list[str] | None = None, *, timeout_s: float = 5) -> list[EchoResult]:
    """Echo the active nodes (never the clinical PACS in simulation mode unless named explicitly)."""
    selected = {n: cfg.nodes[n] for n in nodes} if nodes else cfg.active_nodes()
    research = cfg.research_node
    rest = OrthancHttp.for_node(cfg, research.name, timeout_s=timeout_s + 5) if research.http_url else None
    known = _research_peers(rest)
    results = []
    for name, node in selected.items():
        if name == "researchPACS":
            o_state, o_ms = "n/a (self)", None
        elif rest is None:
            o_state, o_ms = "n/a (no REST)", None
        elif known is not None and name not in known:
            o_state, o_ms = NOT_A_PEER, None  # e.g. the pseudoPACS: nmdose writes to it over REST
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
        if name == cfg.dose_node.name:
            try:
                result.dose_sr_classes = [
                    c.as_dict() for c in dose_sr_acceptance(cfg, node, timeout_s=timeout_s)
                ]
            except (OSError, ValueError, NmdoseError) as exc:
                result.dose_sr_error = f"dose SR classes not checked: {exc}"[:300]
        results.append(result)
    return results


# ----- does the dose PACS accept each dose SR class? (an association negotiation, nothing sent)
# (UID, name): the classes from nmdose.sop_classes, their names from pydicom's UID dictionary.
DOSE_SR_CLASSES: tuple[tuple[str, str], ...] = tuple((str(uid), uid.name) for uid in ECHO_DOSE_SR_CLASSES)
_TRANSFER_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian
_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_IMPLEMENTATION_CLASS = "1.2.826.0.1.3680043.8.498.1.14"  # nmdose (under pydicom's UID root, as its UIDs)
_IMPLEMENTATION_VERSION = "NMDOSE_NEGOT"
# PS3.8 table 9-18: presentation context results of an A-ASSOCIATE-AC
_PC_RESULTS = {
    0: "accepted",
    1: "refused (user rejection)",
    2: "refused (no reason)",
    3: "refused (abstract syntax not supported)",
    4: "refused (transfer syntaxes not supported)",
}
# PS3.8 table 9-21: A-ASSOCIATE-RJ source/reason
_RJ_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


@dataclass
class SopClassAcceptance:
    uid: str
    name: str
    accepted: bool
    result: str  # accepted | refused (…)
    transfer_syntax: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def _uid_item(item_type: int, uid: str) -> bytes:
    return _item(item_type, uid.encode("ascii"))


def _ae(title: str) -> bytes:
    return title.encode("ascii", "replace")[:16].ljust(16, b" ")


def associate_rq(calling: str, called: str, abstract_syntaxes: list[str]) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing each abstract syntax in its own presentation context (ids 1, 3, 5, …)
    with explicit and implicit VR little endian."""
    contexts = b""
    for index, uid in enumerate(abstract_syntaxes):
        body = struct.pack(">BBBB", 2 * index + 1, 0, 0, 0) + _uid_item(0x30, uid)
        body += b"".join(_uid_item(0x40, ts) for ts in _TRANSFER_SYNTAXES)
        contexts += _item(0x20, body)
    user = _item(0x51, struct.pack(">I", 16384)) + _uid_item(0x52, _IMPLEMENTATION_CLASS)
    user += _item(0x55, _IMPLEMENTATION_VERSION.encode())
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    body += _uid_item(0x10, _APPLICATION_CONTEXT) + contexts + _item(0x50, user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the peer closed the connection during the association negotiation")
        data += chunk
    return data


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, _reserved, length = struct.unpack(">BBI", _recv_exact(sock, 6))
    if length > 1 << 20:
        raise ValueError(f"association negotiation: a PDU of {length} bytes (not DICOM?)")
    return pdu_type, _recv_exact(sock, length)


def parse_associate_ac(body: bytes) -> dict[int, tuple[int, str | None]]:
    """Presentation context id -> (result, accepted transfer syntax) of an A-ASSOCIATE-AC body."""
    results: dict[int, tuple[int, str | None]] = {}
    pos = 68  # protocol version, reserved, called and calling AE titles, 32 reserved bytes
    while pos + 4 <= len(body):
        item_type, _reserved, length = struct.unpack(">BBH", body[pos : pos + 4])
        value = body[pos + 4 : pos + 4 + length]
        if item_type == 0x21 and len(value) >= 4:
            context_id, result = value[0], value[2]
            syntax = None
            if len(value) >= 8 and value[4] == 0x40:
                (ts_length,) = struct.unpack(">H", value[6:8])
                syntax = value[8 : 8 + ts_length].rstrip(b"\0 ").decode("ascii", "replace") or None
            results[context_id] = (result, syntax)
        pos += 4 + length
    return results


def negotiate(
    host: str,
    port: int,
    calling: str,
    called: str,
    sop_classes: tuple[tuple[str, str], ...] = DOSE_SR_CLASSES,
    *,
    timeout_s: float = 5,
    ssl_context=None,
) -> list[SopClassAcceptance]:
    """Propose every SOP class in one association and release it: whether the peer accepts each. Raises
    `PacsError` when no association is established (refused as a whole, aborted, not DICOM) and OSError when the
    peer cannot be reached."""
    uids = [uid for uid, _name in sop_classes]
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        sock = ssl_context.wrap_socket(raw) if ssl_context is not None else raw
        try:
            sock.sendall(associate_rq(calling, called, uids))
            pdu_type, body = _read_pdu(sock)
            if pdu_type == 0x03:  # A-ASSOCIATE-RJ: result, source, reason at bytes 1..3
                source, reason = (body[2], body[3]) if len(body) >= 4 else (0, 0)
                why = _RJ_REASONS.get((source, reason), f"source {source}, reason {reason}")
                raise PacsError(f"{called}@{host}:{port}: association rejected ({why})")
            if pdu_type != 0x02:
                kind = "aborted" if pdu_type == 0x07 else f"answered with PDU type {pdu_type:#04x}"
                raise PacsError(f"{called}@{host}:{port}: association {kind}")
            results = parse_associate_ac(body)
            with contextlib.suppress(OSError, ValueError):
                sock.sendall(struct.pack(">BBI", 0x05, 0, 4) + bytes(4))  # A-RELEASE-RQ
                _read_pdu(sock)  # A-RELEASE-RP
        finally:
            if sock is not raw:
                with contextlib.suppress(OSError, ValueError):
                    sock.close()
    rows = []
    for index, (uid, name) in enumerate(sop_classes):
        result, syntax = results.get(2 * index + 1, (None, None))
        text = _PC_RESULTS.get(result, "refused (no answer for this presentation context)")
        rows.append(SopClassAcceptance(uid, name, result == 0, text, syntax if result == 0 else None))
    return rows


def dose_sr_acceptance(cfg: Config, node=None, *, timeout_s: float = 5) -> list[SopClassAcceptance]:
    """Whether the dose PACS (or ``node``) accepts each dose SR class, negotiated as our tools' AE title
    (``local_aet``), over TLS for a ``tls: true`` node."""
    node = node or cfg.dose_node
    context = tls.client_context(cfg) if node.tls else None

    def ask(classes: tuple[tuple[str, str], ...]) -> list[SopClassAcceptance]:
        return negotiate(node.host, node.port, cfg.local_aet, node.aet, classes, timeout_s=timeout_s,
                         ssl_context=context)  # fmt: skip

    try:
        return ask(DOSE_SR_CLASSES)
    except PacsError:
        # refused as a whole (a PACS that accepts none of the proposed classes rejects the association): one
        # association per class says which
        rows = []
        for uid, name in DOSE_SR_CLASSES:
            try:
                rows.extend(ask(((uid, name),)))
            except PacsError as exc:
                rows.append(SopClassAcceptance(uid, name, False, f"refused ({str(exc).split(': ', 1)[-1]})"))
        return rows


def register(sub) -> None:
    p = sub.add_parser("echo", help="C-ECHO every configured node (through Orthanc and with echoscu)")
    p.add_argument("nodes", nargs="*", help="node names (default: the nodes active in this mode)")
    p.add_argument("--timeout", type=float, default=5, help="seconds per echo (default: %(default)s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_echo)
    register_health(sub)


def register_health(sub) -> None:
    p = sub.add_parser(
        "health",
        help="the research PACS plugin's /nmdose/health answer, and whether the dose PACS accepts each dose SR class",
    )
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
    data["dose_pacs"] = dose_pacs_health(ctx.config)
    print(json.dumps(data, indent=2))
    return 0 if data.get("status") == "ok" and data["dose_pacs"]["status"] != "refuses dose SR classes" else 1


def dose_pacs_health(cfg: Config, *, timeout_s: float = 5) -> dict:
    """The dose PACS's part of `nmdose health`: does it accept each dose SR class? ``status``: ok, refuses dose
    SR classes (a configuration defect: those reports can never be forwarded), or unreachable (an outage:
    forwarding waits for it)."""
    dose = cfg.dose_node
    try:
        rows = [c.as_dict() for c in dose_sr_acceptance(cfg, dose, timeout_s=timeout_s)]
    except (OSError, ValueError, NmdoseError) as exc:
        return {"node": dose.name, "status": "unreachable", "error": f"{exc}"[:300]}
    refused = [f"{c['name']} ({c['uid']}): {c['result']}" for c in rows if not c["accepted"]]
    return {"node": dose.name, "status": "refuses dose SR classes" if refused else "ok", "refused": refused,
            "dose_sr_classes": rows}  # fmt: skip


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
            if r.dose_sr_classes is not None or r.dose_sr_error:
                print(f"\n{r.node} ({r.aet}@{r.address}) accepts the dose SR classes:")
                for c in r.dose_sr_classes or []:
                    print(
                        f"  {c['name']:48} {c['uid']:32} {'yes' if c['accepted'] else 'NO: ' + c['result']}"
                    )
                if r.dose_sr_error:
                    print(f"  {r.dose_sr_error}")
    for r in results:
        if r.warning:
            print(f"nmdose: warning: {r.node}: {r.warning}", file=sys.stderr)
        for c in r.refused_dose_sr_classes:
            print(f"nmdose: error: {r.node} {c['result']} {c['name']} ({c['uid']}): dose reports of this class "
                  "cannot be forwarded to it (docs/dose.md: the dose PACS must accept every dose SR class)",
                  file=sys.stderr)  # fmt: skip
    return 0 if all(r.ok for r in results) else 1


def _tls_text(r: EchoResult) -> str:
    if not r.tls:
        return "no (plaintext)"
    if r.tls_error:
        return f"yes, {r.tls_error}"
    cert = r.peer_certificate or {}
    return f"yes, peer {cert.get('subject')}, expires {cert.get('not_after')} ({cert.get('days_left')} days)"
