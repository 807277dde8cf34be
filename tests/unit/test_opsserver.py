"""The ops server of the relay, workers and the notifier: where it listens and what it answers."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from common.opsserver import start_ops_server
from condense.stack import free_port


@pytest.fixture
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    started: list[ThreadingHTTPServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def _non_loopback_address() -> str | None:
    # The address this machine would use towards another network, without sending anything.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_it_binds_loopback_by_default(servers: list[ThreadingHTTPServer]) -> None:
    port = free_port()
    server = start_ops_server(port, lambda: {"db": "ok"})
    assert server is not None
    servers.append(server)

    assert server.server_address == ("127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
        assert json.loads(response.read()) == {"ready": True, "checks": {"db": "ok"}}
    other = _non_loopback_address()
    if other is not None:
        with pytest.raises(ConnectionRefusedError), socket.create_connection((other, port), timeout=5):
            pass


def test_it_binds_the_host_it_is_given(servers: list[ThreadingHTTPServer]) -> None:
    port = free_port()
    server = start_ops_server(port, lambda: {}, host="0.0.0.0")
    assert server is not None
    servers.append(server)

    assert server.server_address == ("0.0.0.0", port)


def test_port_zero_turns_it_off() -> None:
    assert start_ops_server(0, lambda: {}) is None
