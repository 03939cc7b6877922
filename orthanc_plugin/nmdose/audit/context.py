"""The peer address of the HTTP request being served on this thread.

Orthanc hands the client's IP address to the incoming-HTTP filter (`RegisterIncomingHttpRequestFilter`), not to
the REST callback; both run on the same HTTP server thread, one after the other. The filter calls
:func:`remember_client` and the audit observer takes it with :func:`take_client` (which clears it, so a value
never leaks into the next request served by the thread).
"""

from __future__ import annotations

import threading

_local = threading.local()


def remember_client(ip: str | None) -> None:
    _local.ip = ip or None


def take_client() -> str | None:
    ip = getattr(_local, "ip", None)
    _local.ip = None
    return ip
