"""A local SMTP sink for the tests, the bench and `make demo`: a real SMTP server (aiosmtpd, a dev dependency)
on loopback with STARTTLS required and AUTH (LOGIN/PLAIN, only after STARTTLS), its certificate signed by a CA
made for it, keeping every message it accepts (in memory and, when given, as .eml files in a folder).

`nmdose alerts sink --port P --dir D` runs one in the foreground (the demo starts it in the background)."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: Any  # email.message.EmailMessage
    authenticated_as: str | None
    tls: bool
    at: float  # time.time() when accepted


@dataclass
class Sink:
    host: str
    port: int
    ca_file: Path
    username: str
    password: str
    received: list[Received] = field(default_factory=list)
    controller: Any = None
    folder: Path | None = None
    _event: threading.Event = field(default_factory=threading.Event)

    def wait(self, count: int = 1, timeout_s: float = 20) -> list[Received]:
        """The messages once at least `count` arrived (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"SMTP sink: {len(self.received)} of {count} messages after {timeout_s} s")
            self._event.wait(min(left, 0.2))
            self._event.clear()
        return list(self.received)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def make_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for `host`, written into `folder` (0600)."""
    from nmdose.security.certs import _write_cert, _write_key, make_ca, make_leaf

    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca("nmdose SMTP sink CA", 30)
    key, cert = make_leaf(ca_key, ca_cert, "smtp-sink", [host, "localhost"], 30)
    paths = folder / "smtp-sink-ca.pem", folder / "smtp-sink.pem", folder / "smtp-sink.key"
    _write_cert(paths[0], ca_cert)
    _write_cert(paths[1], cert)
    _write_key(paths[2], key)
    return paths


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    if host in ("127.0.0.1", "localhost"):
        from nmdose.ports import free_port as loopback_port

        return loopback_port()
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start(folder: Path, *, host: str = "127.0.0.1", port: int | None = None, username: str = "alerts",
          password: str = "sink-password", keep_dir: Path | None = None) -> Sink:  # fmt: skip
    """Start the sink in a thread; `folder` receives its certificates (`sink.ca_file` verifies it)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")  # aiosmtpd's own use of it
    logging.getLogger("mail.log").addFilter(lambda r: "login_data is deprecated" not in r.getMessage())

    ca, cert, key = make_certificate(Path(folder), host)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = Sink(host, port or free_port(host), ca, username, password, folder=keep_dir)
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            auth = getattr(session, "auth_data", None)
            who = auth.login.decode() if isinstance(auth, LoginPassword) else None
            msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
            sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, who,
                                          session.ssl is not None, time.time()))  # fmt: skip
            if sink.folder is not None:
                name = f"{time.time():.6f}-{len(sink.received)}.eml"
                fd = os.open(sink.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(envelope.original_content or envelope.content)
            sink._event.set()
            return "250 Message accepted for delivery"

    sink.controller = Controller(
        Handler(),
        hostname=host,
        port=sink.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
        server_hostname=host,
    )
    sink.controller.start()
    return sink
