"""`condense dev`: the embedded stack starts, says when it is ready, serves, turns a second stack
away, and leaves no process behind on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from condense.dev import EXIT_ALREADY_RUNNING, DevLock
from tests.fixtures.pipeline import MODEL_CACHE, expect_json, make_document
from tests.fixtures.processes import descendants, free_port, pid_alive


def _env(data_dir: Path) -> dict[str, str]:
    # No metrics port is set: `condense dev` must pick free ones, so this stack never clashes with
    # another one (or a test) on this machine.
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONDENSE_")}
    return {
        **env,
        "CONDENSE_DATA_DIR": str(data_dir),
        "CONDENSE_DATABASE__URL": f"sqlite:///{data_dir}/condense.db",
        "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{data_dir}/celery.db",
        "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
    }


def _wait_for_line(log_path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        output = log_path.read_text()
        if text in output:
            return output
        assert process.poll() is None, f"condense dev exited with {process.returncode}:\n{output}"
        assert time.monotonic() < deadline, f"no {text!r} from condense dev:\n{output}"
        time.sleep(0.5)


def _condense(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "condense", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dev_stack_says_ready_serves_refuses_a_twin_and_stops_every_child_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "var"
    env = _env(data_dir)
    log_path = tmp_path / "dev.log"
    log = log_path.open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "condense", "dev", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    children: set[int] = set()
    base = f"http://127.0.0.1:{port}"
    try:
        output = _wait_for_line(log_path, "condense dev: ready in", dev, 240)
        assert "condense dev: loading the model" in output
        for component in ("gateway", "relay", "worker", "notifier"):
            assert f"condense dev: {component} ready" in output
        assert f"condense dev: gateway   {base}" in output
        # Once it says ready, it is: no 503 while the model loads.
        assert httpx.get(f"{base}/readyz").status_code == 200
        health = expect_json(httpx.get(f"{base}/healthz"))
        assert health["components"]["db"] == "ok"
        assert health["components"]["broker"] == "ok"
        assert health["components"]["model"] == "ready"

        # Every ops server got a port of its own and answers on loopback.
        stack = json.loads((data_dir / "dev.lock").read_text())
        assert stack["gateway"] == base
        for component in ("relay", "worker", "notifier"):
            address = stack["metrics"][component]
            assert address.startswith("127.0.0.1:") and address != "127.0.0.1:0"
            assert httpx.get(f"http://{address}/readyz").status_code == 200

        # A second stack in the same folder is turned away at once, naming the first one.
        twin = _condense(env, tmp_path, "dev", "--port", str(free_port()))
        assert twin.returncode == EXIT_ALREADY_RUNNING
        assert f"already runs from {data_dir} and serves {base}" in twin.stderr
        # So is one elsewhere that wants the same gateway port.
        elsewhere = _condense(_env(tmp_path / "other"), tmp_path, "dev", "--port", str(port))
        assert elsewhere.returncode == EXIT_ALREADY_RUNNING
        assert (
            f"port {port} on 127.0.0.1 is already in use (a condense gateway answers there"
            in elsewhere.stderr
        )

        # `config show` names the broker this stack really uses.
        shown = _condense(env, tmp_path, "config", "show")
        assert shown.returncode == 0, shown.stderr
        assert f"condense dev uses its own broker, {stack['broker']}" in shown.stdout

        job = expect_json(
            httpx.post(f"{base}/v1/summaries", json={"text": make_document(1), "mode": "async"}, timeout=30),
            200,
            202,
        )
        deadline = time.monotonic() + 120
        while expect_json(httpx.get(f"{base}/v1/summaries/{job['id']}"))["status"] != "succeeded":
            assert time.monotonic() < deadline, "the dev stack never finished a job"
            time.sleep(0.3)
        children = descendants(dev.pid)
        assert len(children) >= 5, "broker, gateway, relay, worker and notifier should all run"
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
    assert "condense dev: stopped" in log_path.read_text()
    # The folder is free for the next stack.
    lock = DevLock(data_dir)
    assert lock.acquire() is None
    lock.release()
