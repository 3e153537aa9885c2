"""`free_port` never hands out a port it gave recently: a server's three ports are taken in a row
before anything binds them, and the OS can pick the same free port twice."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import serving.launch.server as server
from serving.launch.server import free_port


def test_a_server_gets_three_different_free_ports():
    ports = [free_port() for _ in range(3)]
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # each one is free


def test_a_port_the_os_picks_twice_in_a_row_is_not_handed_out_twice(monkeypatch):
    # The OS's choice can't be steered, so a stand-in socket plays it: 41000, 41000 again, 41001.
    picks = iter([41000, 41000, 41001])

    class Socket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(picks)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(server, "_RECENT_PORTS", type(server._RECENT_PORTS)(maxlen=64))
    monkeypatch.setattr(server, "socket", SimpleNamespace(socket=Socket))  # server.py's reference only
    assert [free_port(), free_port()] == [41000, 41001]
