"""``condense dev``: the whole stack on one machine, with no server installed beforehand.

A SQLite database file, the tansu Kafka-protocol broker (memory storage) on a free loopback port,
the gateway, the outbox relay, one worker and the notifier run as child processes of this one. It
restarts a child that dies, and on Ctrl-C or SIGTERM stops every child (and the broker) before it
exits. Children also get SIGTERM should this process die abruptly, so none is left behind.

Until every part answers its ``/readyz`` it says what it is waiting for, then prints one line
saying the stack is ready. One data directory holds one stack: a lock file there (``dev.lock``,
which also records the addresses in use, for ``condense config show``) and a check of the gateway
port turn a second ``condense dev`` away at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condense.stack import Child, broker_command, free_port, wait_for_port
from schema.db import upgrade
from schema.settings import Settings

_RESTART_BACKOFF_MAX_S = 30.0
_TICK_S = 0.5
_PROBE_TIMEOUT_S = 1.0
_WAITING_NOTE_EVERY_S = 15.0

EXIT_ALREADY_RUNNING = 3
"""Exit status when another stack holds the data directory or the gateway port is taken."""

LOCK_NAME = "dev.lock"
OPS_COMPONENTS = ("relay", "worker", "notifier")


# --------------------------------------------------------------------------------------------------
# one stack per data directory


class DevLock:
    """An exclusive ``flock`` on ``<data_dir>/dev.lock`` for the life of this process.

    The kernel drops the lock when the process ends, however it ends, so a crashed stack never
    leaves a stale lock behind. The file's content (JSON: pid and addresses) is informational.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock; None on success, else what the running stack wrote into the file."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_info(fd)
            os.close(fd)
            return info
        self._fd = fd
        self.write({"pid": os.getpid()})
        return None

    def write(self, info: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError("the dev lock is not held")
        data = json.dumps(info, indent=2).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is None:
            return
        # Emptied rather than deleted: removing a lock file races with the next stack opening it.
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _read_info(fd: int) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(os.pread(fd, 65_536, 0) or b"{}")
        if isinstance(data, dict):
            return data
    # Caught between truncate and write: the lock alone says enough.
    return {}


def running_stack(data_dir: Path) -> dict[str, Any] | None:
    """What the ``condense dev`` running from ``data_dir`` uses, or None if none runs there."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port`` (a socket lingering in TIME_WAIT does not count)."""
    with socket.socket() as sock:
        # As uvicorn binds: with SO_REUSEADDR only a live listener makes the bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _who_listens(port: int) -> str:
    status, body = _get_json(f"http://127.0.0.1:{port}/healthz")
    if status == 200 and isinstance(body.get("components"), dict):
        return "a condense gateway answers there: another `condense dev` from another folder?"
    return "another program listens there"


def _already_running_message(info: dict[str, Any], data_dir: Path) -> str:
    pid = info.get("pid", "?")
    where = f" and serves {info['gateway']}" if info.get("gateway") else ""
    return (
        f"condense dev: another `condense dev` (pid {pid}) already runs from {data_dir}{where}.\n"
        "Use that one, stop it (Ctrl-C in its terminal), or give this one its own folder and port:\n"
        "  CONDENSE_DATA_DIR=/some/other/dir condense dev --port 8001"
    )


# --------------------------------------------------------------------------------------------------
# readiness


def _get_json(url: str) -> tuple[int | None, dict[str, Any]]:
    """Status and JSON body of a GET, (None, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_S) as response:  # noqa: S310 - loopback
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return None, {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    return status, body if isinstance(body, dict) else {}


@dataclass
class Probe:
    """One component's ``/readyz``, polled until it says ready; url None: nothing to poll."""

    name: str
    url: str | None
    ready: bool = False
    detail: str = "starting"
    announced: bool = False

    def poll(self) -> bool:
        """Poll once; True when it just became ready."""
        if self.url is None or self.ready:
            return False
        status, body = _get_json(self.url)
        if status == 200:
            self.ready = True
            self.detail = "ready"
            return True
        if status is None:
            self.detail = "not answering yet"
        else:
            checks = body.get("checks")
            items = checks.items() if isinstance(checks, dict) else ()
            waiting = [f"{key}: {value}" for key, value in items if value not in ("ok", "ready")]
            self.detail = ", ".join(waiting) or f"HTTP {status}"
        return False


def _model_note(settings: Settings) -> str:
    cache = Path(settings.summarizer.cache_dir)
    if cache.is_dir() and any(cache.iterdir()):
        return f"loading the model (cached in {cache}) ..."
    return (
        "loading the model ... (the first start exports it to ONNX int8, about 30 s; later starts reuse it)"
    )


class Readiness:
    """Polls every probe each tick until all are ready, printing progress and then one ready line."""

    def __init__(self, probes: list[Probe], started: float, summary: list[str], log_dir: Path) -> None:
        self.probes = probes
        self.log_dir = log_dir
        self.started = started
        self.summary = summary
        self.done = False
        self._last_note = started
        self._model_error_shown = False
        self._ready_before = False

    def tick(self, now: float) -> None:
        if self.done:
            return
        for probe in self.probes:
            if probe.poll():
                again = " again" if probe.announced else ""
                probe.announced = True
                _say(f"{probe.name} ready{again} ({now - self.started:.0f} s)")
            if probe.name == "gateway" and "model: error" in probe.detail and not self._model_error_shown:
                self._model_error_shown = True
                _say(f"the gateway could not load the model; see {self.log_dir / 'gateway.log'}")
        if all(probe.ready or probe.url is None for probe in self.probes):
            if self._ready_before:
                _say("ready again")
            else:
                for line in self.summary:
                    _say(line)
                _say(f"ready in {now - self.started:.0f} s. Ctrl-C stops everything.")
            self.done = self._ready_before = True
            return
        if now - self._last_note >= _WAITING_NOTE_EVERY_S:
            self._last_note = now
            waiting = "; ".join(f"{p.name} ({p.detail})" for p in self.probes if p.url and not p.ready)
            _say(f"still waiting for {waiting} ({now - self.started:.0f} s)")

    def restarted(self, name: str) -> None:
        for probe in self.probes:
            if probe.name == name and probe.url is not None:
                probe.ready = False
                probe.detail = "restarting"
                self.done = False


def _say(line: str) -> None:
    print(f"condense dev: {line}", flush=True)


# --------------------------------------------------------------------------------------------------
# the stack


def _ops_ports(settings: Settings) -> dict[str, int]:
    """Each ops server's port: as configured (0 = off), else a free one, so two stacks never clash."""
    ports = {}
    for name in OPS_COMPONENTS:
        section = getattr(settings, name)
        ports[name] = section.metrics_port if "metrics_port" in section.model_fields_set else free_port()
    return ports


def run_dev_stack(settings: Settings, *, port: int | None, config_path: str | None) -> int:
    data_dir = Path(settings.data_dir).resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    gateway_port = port if port is not None else settings.gateway.port

    lock = DevLock(data_dir)
    holder = lock.acquire()
    if holder is not None:
        print(_already_running_message(holder, data_dir), file=sys.stderr, flush=True)
        return EXIT_ALREADY_RUNNING
    try:
        if port_taken(gateway_port):
            print(
                f"condense dev: port {gateway_port} on 127.0.0.1 is already in use ({_who_listens(gateway_port)}).\n"
                f"Stop what uses it, or pick another port: condense dev --port {gateway_port + 1}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_ALREADY_RUNNING
        return _run(settings, lock, data_dir, log_dir, gateway_port, config_path)
    finally:
        lock.release()


def _run(
    settings: Settings,
    lock: DevLock,
    data_dir: Path,
    log_dir: Path,
    gateway_port: int,
    config_path: str | None,
) -> int:
    started = time.monotonic()
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    ops = _ops_ports(settings)
    for name, ops_port in ops.items():
        if ops_port and port_taken(ops_port):
            _say(f"{name} metrics port {ops_port} is taken; its /metrics and /readyz will not start")
            ops[name] = 0
    base = f"http://127.0.0.1:{gateway_port}"
    lock.write(
        {
            "pid": os.getpid(),
            "gateway": base,
            "broker": bootstrap,
            "database": settings.database.url,
            "metrics": {name: f"127.0.0.1:{p}" if p else "off" for name, p in ops.items()},
            "logs": str(log_dir),
        }
    )

    _say(f"migrating {settings.database.url}")
    upgrade(settings.database.url)

    env = dict(os.environ)
    env.update(
        {
            "CONDENSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "CONDENSE_DATA_DIR": str(data_dir),
            "CONDENSE_GATEWAY__PORT": str(gateway_port),
            "CONDENSE_GATEWAY__HOST": "127.0.0.1",
            # The dev stack's webhooks may target a receiver on this machine.
            "CONDENSE_NOTIFIER__ALLOW_LOOPBACK": "true",
            "CONDENSE_NOTIFIER__PUBLIC_BASE_URL": base,
            "PYTHONUNBUFFERED": "1",
            **{f"CONDENSE_{name.upper()}__METRICS_PORT": str(p) for name, p in ops.items()},
        }
    )
    if config_path:
        env["CONDENSE_CONFIG"] = str(Path(config_path).resolve())
    condense = [sys.executable, "-m", "condense"]
    children = [
        Child("broker", broker_command(bootstrap), log_dir / "broker.log"),
        Child("gateway", [*condense, "gateway"], log_dir / "gateway.log"),
        Child("relay", [*condense, "relay"], log_dir / "relay.log"),
        Child("worker", [*condense, "worker"], log_dir / "worker.log"),
        Child("notifier", [*condense, "notifier"], log_dir / "notifier.log"),
    ]
    probes = [Probe("gateway", f"{base}/readyz")] + [
        Probe(name, f"http://127.0.0.1:{p}/readyz" if p else None) for name, p in ops.items()
    ]
    metrics = ", ".join(f"{name} {f'127.0.0.1:{p}' if p else 'off'}" for name, p in ops.items())
    summary = [
        f"gateway   {base}  (API docs {base}/docs)",
        f"broker    {bootstrap} (in memory)",
        f"database  {settings.database.url}",
        f"metrics   {metrics}",
        f"logs      {log_dir}",
    ]
    readiness = Readiness(probes, started, summary, log_dir)

    stopping = threading.Event()

    def _request_stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)

    try:
        _say(f"starting the broker, gateway, relay, worker and notifier (logs in {log_dir})")
        children[0].start(env)
        if not wait_for_port(broker_port, 15):
            print(f"condense dev: the broker did not start; see {children[0].log_path}", file=sys.stderr)
            return 1
        for child in children[1:]:
            child.start(env)
        _say(f"the gateway will answer on {base} once the model is loaded")
        _say(_model_note(settings))
        while not stopping.wait(_TICK_S):
            for name in _restart_dead(children, env):
                readiness.restarted(name)
            readiness.tick(time.monotonic())
    finally:
        # Stop in reverse: the producers of work first, the broker last.
        for child in reversed(children):
            child.stop()
        _say("stopped")
    return 0


def _restart_dead(children: list[Child], env: dict[str, str]) -> list[str]:
    """Restart every child that exited (with a growing pause); returns their names."""
    now = time.monotonic()
    restarted = []
    for child in children:
        process = child.process
        if process is None or process.poll() is None or now < child.next_start:
            continue
        child.restarts += 1
        delay = min(_RESTART_BACKOFF_MAX_S, 2.0**child.restarts)
        _say(f"{child.name} exited with {process.returncode}; restarting (see {child.log_path})")
        child.next_start = now + delay
        child.start(env)
        restarted.append(child.name)
    return restarted
