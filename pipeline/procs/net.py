"""Whether something listens on a loopback port, without being fooled by a self-connection.

Linux can connect a socket to itself: a connect to 127.0.0.1:P with nothing listening
succeeds when the kernel happens to pick P as the client's own source port, which it
can whenever P lies in the ephemeral range. Such a "connection" answers nobody, so it is
not counted as a listener.

The same range is why ports picked for a server that may be restarted (a test cluster's
broker node, the soak's stack) come from below it (`listening_port_range`): while the
server is down, any outgoing connection on the machine may be handed its port as a source
port, and the restarted server then fails to bind ("Address already in use").
"""

from __future__ import annotations

import socket
from pathlib import Path

EPHEMERAL_PORTS = "/proc/sys/net/ipv4/ip_local_port_range"
EPHEMERAL_DEFAULT = (32768, 60999)   # Linux's default range
LISTEN_LOW = 20_000                  # the lowest port picked for a server of ours
MIN_SPAN = 2_000                     # fewer free ports than this below the range: look above it


def ephemeral_range(path: str | Path = EPHEMERAL_PORTS) -> tuple[int, int]:
    """The kernel's source ports for outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = (int(x) for x in Path(path).read_text().split()[:2])
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT
    return (low, high) if 0 < low <= high <= 65535 else EPHEMERAL_DEFAULT


def listening_port_range(ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """(low, high), inclusive: where to pick a free port that a server will listen on again
    after a restart. Outside the ephemeral range: below it, else above it, else (a kernel
    that hands out nearly every port) anywhere from 1024."""
    low, high = ephemeral or ephemeral_range()
    if low - 1 - LISTEN_LOW >= MIN_SPAN:
        return LISTEN_LOW, low - 1
    if 65535 - high >= MIN_SPAN:
        return high + 1, 65535
    return 1024, 65535


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
