"""Free loopback ports for the test and demo stacks: outside the kernel's ephemeral range, never twice."""

from __future__ import annotations

import itertools
import socket

from nmdose import ports


def test_free_ports_lie_below_the_ephemeral_range_and_are_not_handed_out_twice():
    lo, _ = ports._ephemeral_range()
    got = [ports.free_port() for _ in range(300)]
    assert len(set(got)) == len(got)
    assert all(lo - 12000 <= p < lo for p in got)


def test_a_port_someone_listens_on_is_never_handed_out(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as server:
        taken = server.getsockname()[1]
        with socket.create_server(("127.0.0.1", 0)) as other:
            # The random choices land on the two taken ports first, then on the ports above them.
            first_free = max(taken, other.getsockname()[1]) + 1
            choices = itertools.chain([taken, other.getsockname()[1]], itertools.count(first_free))
            monkeypatch.setattr(ports, "_ephemeral_range", lambda: (65000, 65535))
            monkeypatch.setattr(ports.random, "randrange", lambda a, b: next(choices))
            got = ports.free_port()
            assert got >= first_free
            assert ports.port_in_use("127.0.0.1", taken)
            assert not ports.port_in_use("127.0.0.1", got)


def test_a_connection_to_itself_is_not_a_listener(monkeypatch):
    """The kernel may pick the destination port as the source port of a loopback connect (simultaneous open)."""

    class SelfConnected:
        def __init__(self, *a):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def settimeout(self, t):
            pass

        def connect_ex(self, addr):
            return 0

        def getsockname(self):
            return ("127.0.0.1", 40001)

        def getpeername(self):
            return ("127.0.0.1", 40001)

    monkeypatch.setattr(ports.socket, "socket", SelfConnected)
    assert not ports.port_in_use("127.0.0.1", 40001)
