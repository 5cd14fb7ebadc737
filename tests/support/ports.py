"""Free loopback ports for tests and benches (never used by the product itself)."""

from __future__ import annotations

import socket

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
