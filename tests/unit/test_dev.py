"""`condense dev`'s own pieces: one stack per folder, the port check, and what it prints while
the stack comes up."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from common.opsserver import start_ops_server
from condense.dev import DevLock, Probe, Readiness, port_taken, running_stack
from condense.stack import free_port


def test_the_lock_admits_one_stack_per_folder_and_names_the_holder(tmp_path: Path) -> None:
    first = DevLock(tmp_path)
    assert first.acquire() is None
    first.write({"pid": 4242, "gateway": "http://127.0.0.1:8123"})

    second = DevLock(tmp_path)
    assert second.acquire() == {"pid": 4242, "gateway": "http://127.0.0.1:8123"}
    assert running_stack(tmp_path) == {"pid": 4242, "gateway": "http://127.0.0.1:8123"}

    first.release()
    assert running_stack(tmp_path) is None
    assert second.acquire() is None
    second.release()


def test_no_lock_file_means_no_stack(tmp_path: Path) -> None:
    assert running_stack(tmp_path) is None


def test_a_listening_port_is_taken_and_a_free_one_is_not() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert port_taken(listener.getsockname()[1])
    assert not port_taken(free_port())


def test_progress_then_one_ready_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    checks = {"db": "ok", "model": "loading"}
    port = free_port()
    server = start_ops_server(port, lambda: dict(checks))
    assert server is not None
    try:
        probes = [Probe("gateway", f"http://127.0.0.1:{port}/readyz"), Probe("relay", None)]
        readiness = Readiness(probes, started=100.0, summary=["gateway   http://x"], log_dir=tmp_path)

        readiness.tick(now=101.0)
        assert capsys.readouterr().out == ""
        readiness.tick(now=116.0)
        assert capsys.readouterr().out == "condense dev: still waiting for gateway (model: loading) (16 s)\n"

        checks["model"] = "ok"
        readiness.tick(now=130.0)
        assert capsys.readouterr().out.splitlines() == [
            "condense dev: gateway ready (30 s)",
            "condense dev: gateway   http://x",
            "condense dev: ready in 30 s. Ctrl-C stops everything.",
        ]
        readiness.tick(now=140.0)
        assert capsys.readouterr().out == ""

        # A restarted component is waited for, and announced, again.
        readiness.restarted("gateway")
        readiness.tick(now=150.0)
        assert capsys.readouterr().out.splitlines() == [
            "condense dev: gateway ready again (50 s)",
            "condense dev: ready again",
        ]
    finally:
        server.shutdown()
        server.server_close()
