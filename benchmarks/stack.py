"""Start the real components for a benchmark: a broker, a PostgreSQL database, condense processes."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from condense.dev import Child, free_port, tansu_binary, wait_for_http, wait_for_port
from schema.db import upgrade

PG_ADMIN_URL = os.environ.get("CONDENSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    name = f"condense_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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

    def broker(self) -> str:
        port = free_port()
        bootstrap = f"127.0.0.1:{port}"
        self.start(
            "broker",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://{bootstrap}",
                "--advertised-listener-url",
                f"tcp://{bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
        )
        if not wait_for_port(port, 15):
            raise RuntimeError("the broker did not start")
        self.env["CONDENSE_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
        return bootstrap

    def wait_ready(self, port: int, timeout_s: float = 180) -> None:
        if not wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout_s):
            logs = "\n".join(f"--- {c.name}\n{c.log_path.read_text()[-2000:]}" for c in self.children)
            raise RuntimeError(f"nothing ready on port {port}\n{logs}")

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
