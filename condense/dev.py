"""``condense dev``: the whole stack on one machine, with no server installed beforehand.

A SQLite database file, the tansu Kafka-protocol broker (memory storage) on a free loopback port,
the gateway, the outbox relay, one worker and the notifier run as child processes of this one. It
restarts a child that dies, and on Ctrl-C or SIGTERM stops every child (and the broker) before it
exits. Children also get SIGTERM should this process die abruptly, so none is left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from condense.stack import Child, broker_command, free_port, wait_for_http, wait_for_port
from schema.db import upgrade
from schema.settings import Settings

_RESTART_BACKOFF_MAX_S = 30.0


def run_dev_stack(settings: Settings, *, port: int | None, config_path: str | None) -> int:
    data_dir = Path(settings.data_dir).resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    gateway_port = port if port is not None else settings.gateway.port
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"

    print(f"condense dev: migrating {settings.database.url}", flush=True)
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
            "CONDENSE_NOTIFIER__PUBLIC_BASE_URL": f"http://127.0.0.1:{gateway_port}",
            "PYTHONUNBUFFERED": "1",
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

    stopping = threading.Event()

    def _request_stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)

    try:
        children[0].start(env)
        if not wait_for_port(broker_port, 15):
            print("condense dev: the broker did not start; see " + str(children[0].log_path), file=sys.stderr)
            return 1
        for child in children[1:]:
            child.start(env)
        base = f"http://127.0.0.1:{gateway_port}"
        if wait_for_http(f"{base}/healthz", 60):
            print(
                f"condense dev: gateway   {base}  (API docs {base}/docs, health {base}/healthz)", flush=True
            )
        else:
            print(
                f"condense dev: the gateway is not answering yet; see {log_dir / 'gateway.log'}", flush=True
            )
        print(f"condense dev: broker    {bootstrap} (in memory)", flush=True)
        print(f"condense dev: database  {settings.database.url}", flush=True)
        print(f"condense dev: logs      {log_dir}", flush=True)
        print("condense dev: Ctrl-C stops everything", flush=True)
        while not stopping.wait(0.5):
            _restart_dead(children, env)
    finally:
        # Stop in reverse: the producers of work first, the broker last.
        for child in reversed(children):
            child.stop()
        print("condense dev: stopped", flush=True)
    return 0


def _restart_dead(children: list[Child], env: dict[str, str]) -> None:
    now = time.monotonic()
    for child in children:
        process = child.process
        if process is None or process.poll() is None or now < child.next_start:
            continue
        child.restarts += 1
        delay = min(_RESTART_BACKOFF_MAX_S, 2.0**child.restarts)
        print(
            f"condense dev: {child.name} exited with {process.returncode}; restarting (see {child.log_path})",
            flush=True,
        )
        child.next_start = now + delay
        child.start(env)
