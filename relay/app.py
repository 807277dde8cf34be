"""The relay process: publish the outbox and sweep, in one loop, behind the ops server.

It runs as its own process so that kafka-python's network thread never competes with request
handling for the GIL.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime

from sqlalchemy import Engine

from common.metrics import OUTBOX_PENDING
from common.opsserver import start_ops_server
from relay.drift import DriftMonitor
from relay.publisher import OutboxPublisher
from relay.sweeper import Sweeper, SweepReport
from schema.db import database_status, make_engine
from schema.dbwatch import SqliteWatch
from schema.models import utcnow
from schema.settings import Settings

log = logging.getLogger(__name__)

_IDLE_SLEEP_MIN_S = 0.005
# An empty round doubles the wait before the next, up to this. Where the database can be watched
# (a SQLite file) a commit ends the wait early, so a long one costs no latency; elsewhere
# (PostgreSQL) the cap is also the worst delay a job's publication sees after an idle spell.
_IDLE_SLEEP_MAX_S = 0.1
_WATCHED_IDLE_SLEEP_MAX_S = 2.0
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 10.0


class Relay:
    """A publisher and a sweeper sharing one engine, and what the one learns for the other."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database)
        self.publisher = OutboxPublisher(settings, self.engine)
        self.sweeper = Sweeper(settings, self.engine)
        self.watch = SqliteWatch.for_url(settings.database.url)
        self.drift = DriftMonitor(settings.governance.drift, self.engine)
        # Why the last round failed (exception type only), None while rounds succeed.
        self.last_error: str | None = None

    def sweep(self, now: datetime | None = None) -> SweepReport:
        now = now or utcnow()
        lost_before = self.publisher.lost_before
        report = self.sweeper.sweep(now, lost_before=lost_before)
        # A full batch may have left jobs queued before the loss: the next sweep takes them.
        if lost_before is not None and report.republished < self.settings.relay.sweep_limit:
            self.publisher.loss_handled(lost_before)
        OUTBOX_PENDING.set(self.publisher.pending(now))
        if self.drift.due(now):
            try:
                self.drift.update(now)
            except Exception as exc:
                # Drift figures are advisory: they must never stop publishing or sweeping.
                log.warning("relay: drift figures not updated: %s", exc)
        return report

    def run(self, stop: threading.Event) -> None:
        sweep_interval_s = self.settings.relay.sweep_interval_s
        last_sweep = float("-inf")
        idle_sleep = _IDLE_SLEEP_MIN_S
        idle_sleep_max = _IDLE_SLEEP_MAX_S if self.watch is None else _WATCHED_IDLE_SLEEP_MAX_S
        backoff = _BACKOFF_MIN_S
        while not stop.is_set():
            # Taken before the round reads the outbox, so a job committed during the round is
            # noticed by the wait below rather than missed until it times out.
            seen = self.watch.signature() if self.watch is not None else ()
            try:
                if time.monotonic() - last_sweep >= sweep_interval_s:
                    last_sweep = time.monotonic()
                    self.sweep()
                # After the sweep, whose figures must go on while the broker is away.
                self.publisher.connect()
                count = self.publisher.publish_once()
                backoff = _BACKOFF_MIN_S
                self.last_error = None
            except Exception as exc:
                # The broker or the database is away: keep the outbox, try again later.
                self.last_error = type(exc).__name__
                log.warning("relay: %s; retrying in %.1fs", exc, backoff)
                self.publisher.drop_producer()
                stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            if count == 0:
                if self.watch is None:
                    stop.wait(min(idle_sleep, self._until_sweep(last_sweep)))
                elif self.watch.wait(seen, stop, min(idle_sleep, self._until_sweep(last_sweep))):
                    # Something was committed: most likely a new job. Look at once, and soon again.
                    idle_sleep = _IDLE_SLEEP_MIN_S
                    continue
                idle_sleep = min(idle_sleep * 2, idle_sleep_max)
            else:
                idle_sleep = _IDLE_SLEEP_MIN_S
        self.publisher.drop_producer()

    def _until_sweep(self, last_sweep: float) -> float:
        return max(0.0, last_sweep + self.settings.relay.sweep_interval_s - time.monotonic())

    def readiness(self) -> dict[str, str]:
        error = self.last_error
        return {
            "db": database_status(self.engine),
            "publish": "ok" if error is None else f"error: {error}",
        }


def run(settings: Settings) -> int:
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    relay = Relay(settings)
    server = start_ops_server(settings.relay.metrics_port, relay.readiness, settings.relay.metrics_host)
    log.info("relay publishing to %s", settings.kafka.bootstrap_servers)
    try:
        relay.run(stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        relay.engine.dispose()
    return 0
