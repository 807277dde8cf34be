"""A whole condense stack for chaos drills: real processes, a steady stream of submits, and counts.

The stack is what production runs, on one machine: PostgreSQL, the tansu broker, the gateway, the
relay, two workers and the notifier, each its own process (``condense.stack``), with a webhook
receiver standing in for the client. A drill breaks one part while submits keep coming, brings it
back, and then reads the database (the source of truth) and the receiver to count what happened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import Engine, create_engine, func, select

from condense.stack import Child, Stack, free_port, wait_for_http
from schema.db import sync_url
from schema.models import JobStatus, NotificationDelivery, SummaryJob, utcnow
from tests.fixtures.database import PgServer
from tests.fixtures.pipeline import MODEL_CACHE, make_document
from tests.fixtures.receivers import WebhookReceiver

# A job is stuck when it waited this much longer than its own processing took.
STUCK_AFTER_S = 60.0
FINAL = {JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELED.value}
WORKERS = ("worker-0", "worker-1")
READY_TIMEOUT_S = 180.0


class ChaosStack:
    """The processes of one stack, each restartable with the environment it was started with."""

    def __init__(self, workdir: Path, database_url: str, *, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.port = free_port()
        self.broker_port = free_port()
        suffix = uuid.uuid4().hex[:8]
        self.stack = Stack(
            workdir,
            {
                "CONDENSE_DATABASE__URL": database_url,
                "CONDENSE_DATA_DIR": str(workdir),
                "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{workdir}/celery.db",
                "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
                "CONDENSE_LOGGING__LEVEL": "INFO",
                "CONDENSE_KAFKA__TOPIC": f"chaos.jobs.{suffix}",
                "CONDENSE_KAFKA__BULK_TOPIC": f"chaos.jobs.bulk.{suffix}",
                "CONDENSE_KAFKA__CONSUMER_GROUP": f"chaos-workers-{suffix}",
                "CONDENSE_KAFKA__SESSION_TIMEOUT_MS": "6000",
                "CONDENSE_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
                "CONDENSE_NOTIFIER__ALLOW_LOOPBACK": "true",
                **(env or {}),
            },
        )
        self.envs: dict[str, dict[str, str]] = {}
        self.ops_ports: dict[str, int] = {}

    # -- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        self.stack.broker(self.broker_port)
        self._start("gateway", ["gateway", "--port", str(self.port)])
        self._start("relay", ["relay"], ops_port_setting="RELAY")
        for name in WORKERS:
            self._start(name, ["worker"], ops_port_setting="WORKER")
        self._start("notifier", ["notifier"], ops_port_setting="NOTIFIER")
        self.wait_ready()

    def _start(self, name: str, args: list[str], *, ops_port_setting: str | None = None) -> None:
        env = dict(self.stack.env)
        if ops_port_setting is not None:
            self.ops_ports[name] = free_port()
            env[f"CONDENSE_{ops_port_setting}__METRICS_PORT"] = str(self.ops_ports[name])
        child = Child(name, [sys.executable, "-m", "condense", *args], self.workdir / f"{name}.log")
        self.envs[name] = env
        child.start(env)
        self.stack.children.append(child)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, exactly a crash."""
        self.stack.child(name).kill()

    def restart(self, name: str) -> None:
        self.stack.child(name).start(self.envs.get(name, self.stack.env))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready_urls(self) -> dict[str, str]:
        urls = {"gateway": f"{self.base_url}/readyz"}
        urls |= {name: f"http://127.0.0.1:{port}/readyz" for name, port in self.ops_ports.items()}
        return urls

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        for name, url in self.ready_urls().items():
            while not wait_for_http(url, 2.0):
                exited = [c.name for c in self.stack.children if c.process and c.process.poll() is not None]
                if exited or time.monotonic() > deadline:
                    why = f"exited: {exited}" if exited else f"not ready within {timeout_s}s"
                    raise AssertionError(f"{name} {why}\n{self.logs()}")

    def metric_total(self, name: str, metric: str) -> float:
        """The sum of ``metric`` on a process's /metrics; 0 when it cannot be read."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.ops_ports[name]}/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(metric) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def logs(self, tail_chars: int = 2500) -> str:
        return "\n".join(
            f"--- {child.name}\n{child.log_path.read_text(errors='replace')[-tail_chars:]}"
            for child in self.stack.children
            if child.log_path.exists()
        )

    def stop(self) -> None:
        self.stack.stop()


class Load:
    """A client submitting long documents at a steady rate from a thread of its own.

    Each document is retried with its own Idempotency-Key until the gateway accepts it, as a
    careful client does, so an answer lost in a crash never becomes a second job.
    """

    def __init__(self, base_url: str, hook: dict[str, str], drill: str, rate_per_s: float) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=10)
        self.hook = hook
        self.drill = drill
        self.interval_s = 1 / rate_per_s
        self.accepted: list[str] = []
        self.refusals: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{drill}", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)
        self.client.close()

    def _run(self) -> None:
        seed = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._submit(seed)
            seed += 1
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _submit(self, seed: int) -> None:
        body = {
            "text": make_document(seed, sentences=20),
            "mode": "async",
            "webhook": self.hook,
            "metadata": {"drill": self.drill},
        }
        key = f"{self.drill}-{seed}-{uuid.uuid4().hex[:8]}"
        # A document whose submit began is seen through, even once the drill asked to stop.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = self.client.post("/v1/summaries", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                self.refusals[type(exc).__name__] += 1
            else:
                if response.status_code in (200, 202):
                    self.accepted.append(response.json()["id"])
                    return
                self.refusals[str(response.status_code)] += 1
            time.sleep(0.5)
        self.refusals["gave_up"] += 1


@dataclass
class DrillCounts:
    drill: str
    submitted: int
    finished: int
    failed: int
    lost: int
    stuck: int
    duplicated: int
    undelivered: int
    max_wait_s: float
    recoveries: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        refused = sum(self.refusals.values())
        return (
            f"chaos {self.drill}: submitted={self.submitted} finished={self.finished} "
            f"stuck={self.stuck} duplicated={self.duplicated} lost={self.lost} failed={self.failed} "
            f"undelivered={self.undelivered} max_wait_s={self.max_wait_s:.1f} "
            f"consumer_recoveries={self.recoveries} refused_submits={refused}"
        )


def _processing_s(timings: dict[str, Any] | None) -> float:
    if not timings:
        return 0.0
    total = timings.get("total_s")
    return float(total) if isinstance(total, int | float) else 0.0


def _wait_s(row: Any, now: datetime) -> float:
    """How much longer than its own processing a job took (or has taken so far)."""
    end = row.finished_at or now
    return (end - row.created_at).total_seconds() - _processing_s(row.timings)


def webhook_events(receiver: WebhookReceiver) -> dict[str, set[str]]:
    """Job id -> the distinct event ids (webhook-id) the client received for it."""
    events: dict[str, set[str]] = {}
    for request in list(receiver.requests):
        payload = request.payload
        if not isinstance(payload, dict) or not str(payload.get("type", "")).startswith("summary."):
            continue
        events.setdefault(str(payload["data"]["id"]), set()).add(request.webhook_id)
    return events


def settle(
    engine: Engine, receiver: WebhookReceiver, ids: list[str], *, timeout_s: float
) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Wait until every job is final and its webhook arrived, or ``timeout_s``; return the rows
    and the webhook events as they are then."""
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            rows = {
                row.id: row
                for row in conn.execute(
                    select(
                        SummaryJob.id,
                        SummaryJob.status,
                        SummaryJob.created_at,
                        SummaryJob.finished_at,
                        SummaryJob.timings,
                        SummaryJob.attempts,
                    ).where(SummaryJob.id.in_(ids))
                )
            }
        events = webhook_events(receiver)
        settled = all(job_id in rows and rows[job_id].status in FINAL and job_id in events for job_id in ids)
        if settled or time.monotonic() > deadline:
            return rows, events
        time.sleep(1.0)


def count(
    drill: str,
    engine: Engine,
    receiver: WebhookReceiver,
    load: Load,
    *,
    drain_s: float,
) -> DrillCounts:
    ids = list(dict.fromkeys(load.accepted))
    rows, events = settle(engine, receiver, ids, timeout_s=drain_s)
    now = utcnow()
    with engine.connect() as conn:
        finish_events = dict(
            conn.execute(
                select(NotificationDelivery.job_id, func.count())
                .where(NotificationDelivery.job_id.in_(ids))
                .group_by(NotificationDelivery.job_id)
            ).all()
        )
        # Jobs of this drill the client never heard of: a submit answered after the client gave up.
        orphans = conn.execute(
            select(func.count())
            .select_from(SummaryJob)
            .where(SummaryJob.metadata_["drill"].as_string() == drill, SummaryJob.id.not_in(ids))
        ).scalar_one()
    final = [rows[job_id] for job_id in ids if job_id in rows and rows[job_id].status in FINAL]
    waits = [_wait_s(rows[job_id], now) for job_id in ids if job_id in rows]
    duplicated = {job_id for job_id, n in finish_events.items() if n > 1}
    duplicated |= {job_id for job_id, seen in events.items() if job_id in rows and len(seen) > 1}
    counts = DrillCounts(
        drill=drill,
        submitted=len(ids),
        finished=len(final),
        failed=sum(1 for row in final if row.status != JobStatus.SUCCEEDED.value),
        lost=len(ids) - len(final) + orphans,
        stuck=sum(1 for wait in waits if wait > STUCK_AFTER_S),
        duplicated=len(duplicated),
        undelivered=sum(1 for row in final if row.id not in events),
        max_wait_s=max(waits, default=0.0),
        refusals=dict(load.refusals),
    )
    if orphans:
        counts.notes.append(f"{orphans} jobs of the drill were never acknowledged to the client")
    return counts


def engine_for(database_url: str) -> Engine:
    return create_engine(sync_url(database_url), pool_pre_ping=True)


# -- PostgreSQL ---------------------------------------------------------------------------------


def database_outage(server: PgServer, database: str, seconds: float) -> None:
    """Take one database away from every client for ``seconds``: new connections are refused and
    open ones are cut. Other databases on the shared server, other engineers' included, see nothing."""
    name = sql.Identifier(database)
    with server.admin() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            time.sleep(seconds)
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


def server_restart_refusal() -> str | None:
    """Why the PostgreSQL server may not be restarted here; None when it may.

    The server is shared: a restart cuts every session on it, other engineers' tests included. It
    happens only on explicit request, on a machine where pg_ctlcluster may run.
    """
    if os.environ.get("CHAOS_PG_RESTART") != "1":
        return (
            "restarting the shared PostgreSQL server cuts every session on it (other test runs too); "
            "set CHAOS_PG_RESTART=1 on a machine of your own to run this drill"
        )
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        return "pg_ctlcluster is not installed"
    if os.geteuid() != 0:
        return "pg_ctlcluster needs root here"
    return None


def restart_server(server: PgServer) -> None:
    """Restart the cluster serving 127.0.0.1:5432 with pg_ctlcluster and wait until it answers."""
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    cluster = next(line.split() for line in listing if line.split()[2:3] == [str(server.port)])
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster[0], cluster[1], "restart", "-m", "fast"],
        check=True,
        timeout=60,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(server.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
