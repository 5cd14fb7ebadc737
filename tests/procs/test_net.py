"""A port answers only when a process listens on it; a socket connected to itself is not one."""

from __future__ import annotations

import socket

from pipeline.procs import net
from pipeline.procs.net import is_self_connection, port_open
from tests.support.ports import free_port, port_run


def test_a_socket_connected_to_itself_is_recognised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.connect(s.getsockname())   # Linux completes this "simultaneous open" with nobody listening
        assert s.getpeername() == s.getsockname()
        assert is_self_connection(s)


def test_a_listener_answers_and_a_closed_port_does_not():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            assert not is_self_connection(conn)
    assert not port_open("127.0.0.1", free_port())


def test_the_ephemeral_range_is_read_from_the_kernel_and_falls_back_to_linux_default(tmp_path):
    f = tmp_path / "range"
    f.write_text("40000\t50000\n")
    assert net.ephemeral_range(f) == (40000, 50000)
    for junk in ("", "a b", "50000 40000", "0 70000"):
        f.write_text(junk)
        assert net.ephemeral_range(f) == net.EPHEMERAL_DEFAULT
    assert net.ephemeral_range(tmp_path / "missing") == net.EPHEMERAL_DEFAULT


def test_servers_listen_outside_the_ephemeral_range():
    assert net.listening_port_range((32768, 60999)) == (net.LISTEN_LOW, 32767)
    assert net.listening_port_range((10000, 60999)) == (61000, 65535)      # nothing below: above it
    assert net.listening_port_range((1024, 65535)) == (1024, 65535)        # nowhere else: anywhere
    low, high = net.ephemeral_range()
    lo, hi = net.listening_port_range()
    assert hi < low or lo > high or (lo, hi) == (1024, 65535)


def test_the_tests_free_ports_lie_outside_the_ephemeral_range_and_never_repeat():
    low, high = net.ephemeral_range()
    picked = [free_port() for _ in range(50)]
    base = port_run(6)
    run = list(range(base, base + 6))
    assert len(set(picked + run)) == 56
    assert not [p for p in picked + run if low <= p <= high]
