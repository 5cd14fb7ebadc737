"""A port answers only when a process listens on it; a socket connected to itself is not one."""

from __future__ import annotations

import socket

from pipeline.procs.net import is_self_connection, port_open
from tests.support.ports import free_port


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
