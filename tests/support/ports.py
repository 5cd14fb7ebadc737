"""Free loopback ports for tests and benches (never used by the product itself)."""

from __future__ import annotations

import socket

from pipeline.metrics.ports import bindable

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port that this process has not handed out before.

    The kernel may offer a just-released port again, so two quick calls could return the
    same number (a broker whose client and controller ports collide does not start)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_run(count: int) -> int:
    """A base port such that base .. base+count-1 are all free on loopback (a cluster's consecutive ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count < 65535 and all(bindable(base + i) for i in range(count)):
            return base
    raise AssertionError("no run of free loopback ports")
