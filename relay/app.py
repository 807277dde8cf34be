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
from relay.publisher import OutboxPublisher
from relay.sweeper import Sweeper, SweepReport
from schema.db import database_status, make_engine
from schema.models import utcnow
from schema.settings import Settings

log = logging.getLogger(__name__)

_IDLE_SLEEP_MIN_S = 0.005
_IDLE_SLEEP_MAX_S = 0.1
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 10.0


class Relay:
    """A publisher and a sweeper sharing one engine, and what the one learns for the other."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database)
        self.publisher = OutboxPublisher(settings, self.engine)
        self.sweeper = Sweeper(settings, self.engine)
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
        return report

    def run(self, stop: threading.Event) -> None:
        sweep_interval_s = self.settings.relay.sweep_interval_s
        last_sweep = float("-inf")
        idle_sleep = _IDLE_SLEEP_MIN_S
        backoff = _BACKOFF_MIN_S
        while not stop.is_set():
            try:
                if time.monotonic() - last_sweep >= sweep_interval_s:
                    last_sweep = time.monotonic()
                    self.sweep()
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
                stop.wait(idle_sleep)
                idle_sleep = min(idle_sleep * 2, _IDLE_SLEEP_MAX_S)
            else:
                idle_sleep = _IDLE_SLEEP_MIN_S
        self.publisher.drop_producer()

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
    server = start_ops_server(settings.relay.metrics_port, relay.readiness)
    log.info("relay publishing to %s", settings.kafka.bootstrap_servers)
    try:
        relay.run(stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        relay.engine.dispose()
    return 0
