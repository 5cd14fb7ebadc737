"""Whether something listens on a loopback port, without being fooled by a self-connection.

Linux can connect a socket to itself: a connect to 127.0.0.1:P with nothing listening
succeeds when the kernel happens to pick P as the client's own source port, which it
can whenever P lies in the ephemeral range (tests pick their free ports there). Such a
"connection" answers nobody, so it is not counted as a listener.
"""

from __future__ import annotations

import socket


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a process accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            return not is_self_connection(conn)
    except OSError:
        return False


def is_self_connection(conn: socket.socket) -> bool:
    try:
        return conn.getsockname() == conn.getpeername()
    except OSError:
        return True
