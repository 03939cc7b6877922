"""Loopback TCP ports: whether one is taken, and a free one for a test or demo stack's node."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from pathlib import Path


def port_in_use(host: str, port: int) -> bool:
    """True when something already accepts connections on host:port.

    A connection to a loopback port nobody listens on can connect to itself when the kernel happens to pick the
    same port as its own source port (TCP simultaneous open); that is not a listener and counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) != 0:
            return False
        with contextlib.suppress(OSError):
            if s.getsockname() == s.getpeername():
                return False
        return True


_handed_out: set[int] = set()
_handed_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback TCP port nothing listens on, for a test or demo stack's node.

    Chosen below the kernel's ephemeral range, so that no `bind(0)` of another program (a browser's debugging
    port, a driver) and no outgoing connection can take it between now and the moment our server binds it, and
    never the same one twice in this process. The port is free now; whoever starts on it checks again."""
    lo, _ = _ephemeral_range()
    low, high = max(1024, lo - 12000), lo
    if high - low < 1000:  # an unusual ephemeral range: leave the choice to the kernel
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(500):
        port = random.randrange(low, high)
        with _handed_lock:
            if port in _handed_out:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", port))
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("0.0.0.0", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise OSError(f"no free TCP port in {low}-{high - 1} after 500 tries")
