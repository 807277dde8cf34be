"""The notifier process: a Celery worker with an embedded beat.

Two tasks, both by name from :mod:`common.celeryapp`: DELIVER_NOTIFICATION (a nudge from whoever
recorded an event: attempt this delivery now if it is due) and SWEEP_NOTIFICATIONS (sent by beat
every ``sweep_interval_s``: attempt everything due). Retries are never parked in the broker as
countdown tasks: their time is in the database and the next sweep finds them, so a broker
restart or a long schedule loses nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler, ScheduleEntry
from sqlalchemy import Engine

from common.celeryapp import DELIVER_NOTIFICATION, NOTIFY_QUEUE, SWEEP_NOTIFICATIONS, make_celery
from common.opsserver import start_ops_server
from notifier.dispatch import Dispatcher
from schema.db import database_status, make_engine
from schema.models import utcnow
from schema.settings import Settings
from schema.store import deliveries

log = logging.getLogger(__name__)


class _LazyDispatcher:
    """Builds the engine on first use, in the process that runs tasks, not where the app is made."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._dispatcher: Dispatcher | None = None
        self._lock = threading.Lock()

    def get(self) -> Dispatcher:
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = Dispatcher(self._settings, make_engine(self._settings.database))
            return self._dispatcher


def anything_due(engine: Engine) -> bool:
    """Whether a sweep now would find a delivery to attempt; True when the database cannot say."""
    try:
        with engine.connect() as conn:
            return bool(deliveries.due_ids(conn, utcnow(), 1))
    except Exception as exc:
        log.warning("could not look for due deliveries (%s); sweeping anyway", type(exc).__name__)
        return True


def sweep_scheduler(settings: Settings) -> type[PersistentScheduler]:
    """Beat that sends a sweep only when some delivery is due.

    An idle notifier then costs one indexed read per ``sweep_interval_s`` instead of a message
    through Celery's broker and a task run that finds nothing. A delivery that became due is
    still swept at the next interval, as before: the read only spares the empty round trips.
    """

    class SweepWhenDueScheduler(PersistentScheduler):
        _engine: Engine | None = None

        def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
            if entry.task == SWEEP_NOTIFICATIONS:
                # Beat runs in a process forked from the worker: an engine of its own, made here,
                # never shares a connection across the fork.
                if self._engine is None:
                    self._engine = make_engine(settings.database)
                if not anything_due(self._engine):
                    return
            super().apply_entry(entry, producer=producer)

        def close(self) -> None:
            super().close()
            if self._engine is not None:
                self._engine.dispose()

    return SweepWhenDueScheduler


def create_celery_app(settings: Settings, dispatchers: _LazyDispatcher | None = None) -> Celery:
    app = make_celery(settings.celery.broker_url, "condense-notifier")
    dispatchers = dispatchers or _LazyDispatcher(settings)
    interval_s = settings.notifier.sweep_interval_s

    @app.task(name=DELIVER_NOTIFICATION, ignore_result=True, shared=False)
    def deliver(delivery_id: str) -> bool:
        return dispatchers.get().deliver_one(delivery_id)

    @app.task(name=SWEEP_NOTIFICATIONS, ignore_result=True, shared=False)
    def sweep() -> int:
        return dispatchers.get().deliver_due()

    app.conf.beat_schedule = {
        "sweep-notifications": {
            "task": SWEEP_NOTIFICATIONS,
            "schedule": interval_s,
            # A sweep that waited a whole interval is superseded by the next one; letting both
            # run would only pile sweeps up behind a slow receiver.
            "options": {"queue": NOTIFY_QUEUE, "expires": interval_s},
        }
    }
    app.conf.beat_schedule_filename = str(Path(settings.data_dir) / "notifier-beat-schedule")
    app.conf.beat_scheduler = sweep_scheduler(settings)
    app.conf.task_routes = {
        DELIVER_NOTIFICATION: {"queue": NOTIFY_QUEUE},
        SWEEP_NOTIFICATIONS: {"queue": NOTIFY_QUEUE},
    }
    return app


_BROKER_CHECK_TIMEOUT_S = 2.0


def broker_status(app: Celery) -> str:
    """ "ok", or why Celery's broker cannot be reached, for health endpoints."""
    try:
        # A fresh connection with a single try: the worker's own connection retries forever and
        # would hang a probe. Redis and AMQP really connect (Redis pings); the SQLAlchemy
        # transport of the embedded stack connects lazily, so there this only proves the URL.
        with app.connection_for_read(connect_timeout=_BROKER_CHECK_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=0, timeout=_BROKER_CHECK_TIMEOUT_S)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def run(settings: Settings) -> int:
    """Run the notifier until it is stopped; return the exit status."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    dispatchers = _LazyDispatcher(settings)
    app = create_celery_app(settings, dispatchers)

    def readiness() -> dict[str, str]:
        return {"db": database_status(dispatchers.get().engine), "broker": broker_status(app)}

    start_ops_server(settings.notifier.metrics_port, readiness, settings.notifier.metrics_host)
    worker = app.Worker(
        beat=True,
        # Threads, not processes: attempts wait on the network, and one process keeps one
        # connection pool to the database.
        pool="threads",
        concurrency=settings.notifier.max_parallel_deliveries,
        queues=[NOTIFY_QUEUE],
        loglevel=settings.logging.level,
        hostname=f"condense-notifier-{os.getpid()}@{socket.gethostname()}",
        # Celery prints its banner straight to stdout; in a stream of JSON lines it is noise.
        quiet=settings.logging.format == "json",
    )
    log.info("notifier starting: sweeping every %.1f s", settings.notifier.sweep_interval_s)
    worker.start()
    return int(worker.exitcode or 0)
