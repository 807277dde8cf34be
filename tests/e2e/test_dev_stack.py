"""`condense dev`: the embedded stack starts, serves, and leaves no process behind on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.pipeline import MODEL_CACHE, expect_json, make_document
from tests.fixtures.processes import descendants, free_port, pid_alive, wait_for_http


def test_dev_stack_serves_and_stops_every_child_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CONDENSE_DATA_DIR": str(tmp_path),
        "CONDENSE_DATABASE__URL": f"sqlite:///{tmp_path}/condense.db",
        "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{tmp_path}/celery.db",
        "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
        "CONDENSE_WORKER__METRICS_PORT": str(free_port()),
        "CONDENSE_NOTIFIER__METRICS_PORT": str(free_port()),
        "CONDENSE_RELAY__METRICS_PORT": str(free_port()),
    }
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "condense", "dev", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    children: set[int] = set()
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/readyz", 180), (tmp_path / "dev.log").read_text()
        health = expect_json(httpx.get(f"http://127.0.0.1:{port}/healthz"))
        assert health["components"]["db"] == "ok"
        assert health["components"]["broker"] == "ok"
        assert health["components"]["model"] == "ready"
        job = expect_json(
            httpx.post(
                f"http://127.0.0.1:{port}/v1/summaries",
                json={"text": make_document(1), "mode": "async"},
                timeout=30,
            ),
            200,
            202,
        )
        deadline = time.monotonic() + 120
        while (
            expect_json(httpx.get(f"http://127.0.0.1:{port}/v1/summaries/{job['id']}"))["status"]
            != "succeeded"
        ):
            assert time.monotonic() < deadline, "the dev stack never finished a job"
            time.sleep(0.3)
        children = descendants(dev.pid)
        assert len(children) >= 5, "broker, gateway, relay, worker and notifier should all run"
        output = (tmp_path / "dev.log").read_text()
        assert f"http://127.0.0.1:{port}" in output
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=60)
        finally:
            log.close()
    assert dev.returncode == 0
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in children):
        assert time.monotonic() < deadline, f"left behind: {[pid for pid in children if pid_alive(pid)]}"
        time.sleep(0.1)
    assert "condense dev: stopped" in (tmp_path / "dev.log").read_text()
