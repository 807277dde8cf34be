"""The outbox relay: publishes committed job ids to Kafka, and republishes jobs Kafka lost.

It runs as its own process so that kafka-python's network thread never competes with request
handling for the GIL. A job id is deleted from the outbox only after the broker acknowledged it
(``acks=all``); a crash in between publishes it twice, which workers tolerate (they skip jobs that
are already final). The sweeper covers what the outbox cannot: a broker that lost its data (the
embedded in-memory broker after a restart) or a job stuck on a worker that vanished.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from sqlalchemy import Connection, Engine, delete, exists, func, insert, select, update

from schema.db import database_status, is_sqlite, make_engine
from schema.metrics import OUTBOX_PENDING
from schema.models import (
    FINAL_STATUSES,
    JobStatus,
    Lane,
    batches_table,
    deliveries_table,
    jobs_table,
    outbox_table,
    utcnow,
)
from schema.opsserver import start_ops_server
from schema.settings import Settings

log = logging.getLogger(__name__)

_JOBS = jobs_table
_OUTBOX = outbox_table
_BATCHES = batches_table
_DELIVERIES = deliveries_table
_SWEEP_LIMIT = 5_000
FINAL_VALUES = tuple(status.value for status in FINAL_STATUSES)
_IDLE_SLEEP_MAX_S = 0.1


def ensure_topics(settings: Settings) -> list[str]:
    """Create the job topics that are missing; returns the names created."""
    kafka = settings.kafka
    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=kafka.request_timeout_ms
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, kafka.partitions, kafka.replication_factor)
            for name in (kafka.topic, kafka.bulk_topic)
            if name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        return [topic.name for topic in wanted]
    finally:
        admin.close()


class OutboxRelay:
    def __init__(self, settings: Settings, engine: Engine | None = None, *, batch_size: int = 500) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database)
        self.batch_size = batch_size
        self._producer: KafkaProducer | None = None
        self._last_sweep = 0.0
        self.published = 0
        self.republished = 0
        # Why the last round of run() failed (exception type only), None while rounds succeed.
        self.last_error: str | None = None
        # Highest offset the broker acknowledged per partition: a later one not above it means the
        # log was reset (a broker that lost its data), and every queued job must be published again.
        # Only partitions that held our ids before can show it; end offsets (ListOffsets) would
        # cover the rest, but the embedded tansu broker miscounts them for compressed batches.
        self._acknowledged: dict[tuple[str, int], int] = {}
        self._republish_before: datetime | None = None

    def _lost_data(self, why: str) -> None:
        if self._republish_before is None:
            log.warning("the broker lost published job ids (%s); republishing every queued job", why)
        self._republish_before = utcnow()

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            kafka = self.settings.kafka
            created = ensure_topics(self.settings)
            seen = {topic for topic, _partition in self._acknowledged}
            if seen.intersection(created):
                self._lost_data(f"topics {sorted(seen.intersection(created))} had vanished")
            self._producer = KafkaProducer(
                bootstrap_servers=kafka.bootstrap_servers,
                acks="all",
                compression_type=None if kafka.compression_type == "none" else kafka.compression_type,
                linger_ms=5,
                retries=5,
                request_timeout_ms=kafka.request_timeout_ms,
                max_block_ms=kafka.request_timeout_ms,
            )
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # noqa: S110 - a broken producer is replaced either way
                pass
            self._producer = None

    def publish_once(self) -> int:
        """Publish up to ``batch_size`` outbox entries; returns how many were published."""
        query = (
            select(_OUTBOX.c.id, _OUTBOX.c.job_id, _OUTBOX.c.topic)
            .order_by(_OUTBOX.c.id)
            .limit(self.batch_size)
        )
        if not is_sqlite(self.settings.database.url):
            # Several relays may run; each takes rows the others have not locked.
            query = query.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return 0
            producer = self._connect()
            futures = [
                producer.send(row.topic, key=row.job_id.encode(), value=row.job_id.encode()) for row in rows
            ]
            producer.flush(timeout=self.settings.kafka.request_timeout_ms / 1000)
            sent = []
            for row, future in zip(rows, futures, strict=True):
                try:
                    acknowledged = future.get(timeout=0)
                except Exception as exc:
                    log.warning("publishing job %s failed: %s", row.job_id, exc)
                    continue
                sent.append(row.id)
                partition = (acknowledged.topic, acknowledged.partition)
                # Offsets only grow: one the broker handed out before means its log was reset.
                if acknowledged.offset <= self._acknowledged.get(partition, -1):
                    self._lost_data(
                        f"{partition[0]}[{partition[1]}] went back to offset {acknowledged.offset}"
                    )
                    self._acknowledged.clear()
                self._acknowledged[partition] = max(
                    acknowledged.offset, self._acknowledged.get(partition, -1)
                )
            if sent:
                conn.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_(sent)))
        self.published += len(sent)
        if len(sent) < len(rows):
            raise KafkaError(f"{len(rows) - len(sent)} of {len(rows)} job ids were not acknowledged")
        return len(sent)

    def sweep(self) -> int:
        """Republish jobs Kafka may have lost, hand back abandoned ones, purge expired results."""
        worker = self.settings.worker
        now = utcnow()
        # After a detected loss every queued job goes out again; otherwise only those queued for
        # so long that something must have gone wrong unnoticed.
        republish_before = self._republish_before or now - timedelta(seconds=worker.requeue_after_s)
        stale_running = now - timedelta(seconds=worker.running_timeout_s)
        kafka = self.settings.kafka
        with self.engine.begin() as conn:
            pending = select(_OUTBOX.c.job_id)
            queued = conn.execute(
                select(_JOBS.c.id, _JOBS.c.lane)
                .where(
                    _JOBS.c.status == JobStatus.QUEUED.value,
                    _JOBS.c.route == "async",
                    _JOBS.c.updated_at < republish_before,
                    _JOBS.c.id.not_in(pending),
                )
                .limit(_SWEEP_LIMIT)
            ).all()
            if self._republish_before is not None and len(queued) < _SWEEP_LIMIT:
                self._republish_before = None
            abandoned = conn.execute(
                update(_JOBS)
                .where(_JOBS.c.status == JobStatus.RUNNING.value, _JOBS.c.updated_at < stale_running)
                .values(status=JobStatus.QUEUED.value, updated_at=now)
                .returning(_JOBS.c.id, _JOBS.c.lane)
            ).all()
            rows = list(queued) + list(abandoned)
            ids = [row.id for row in queued]
            if ids:
                conn.execute(update(_JOBS).where(_JOBS.c.id.in_(ids)).values(updated_at=now))
            if rows:
                conn.execute(
                    insert(_OUTBOX),
                    [
                        {
                            "job_id": row.id,
                            "topic": kafka.bulk_topic if row.lane == Lane.BULK.value else kafka.topic,
                            "created_at": now,
                        }
                        for row in rows
                    ],
                )
            purged = self._purge_expired(conn, now)
        if rows:
            log.info("sweeper requeued %d queued and %d abandoned jobs", len(queued), len(abandoned))
        if purged:
            log.info("sweeper purged %d jobs past the retention period", purged)
        self.republished += len(rows)
        return len(rows)

    def _purge_expired(self, conn: Connection, now: datetime) -> int:
        retention_days = self.settings.database.retention_days
        if retention_days <= 0:
            return 0
        cutoff = now - timedelta(days=retention_days)
        expired = [
            row.id
            for row in conn.execute(
                select(_JOBS.c.id)
                .where(_JOBS.c.status.in_(FINAL_VALUES), _JOBS.c.finished_at < cutoff)
                .limit(_SWEEP_LIMIT)
            )
        ]
        if expired:
            # Attempts go with their deliveries (ON DELETE CASCADE).
            conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.job_id.in_(expired)))
            conn.execute(delete(_JOBS).where(_JOBS.c.id.in_(expired)))
        finished_batches = select(_BATCHES.c.id).where(
            _BATCHES.c.finished_at < cutoff, ~exists().where(_JOBS.c.batch_id == _BATCHES.c.id)
        )
        batch_ids = [row.id for row in conn.execute(finished_batches.limit(_SWEEP_LIMIT))]
        if batch_ids:
            conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.batch_id.in_(batch_ids)))
            conn.execute(delete(_BATCHES).where(_BATCHES.c.id.in_(batch_ids)))
        return len(expired)

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_OUTBOX)).scalar_one())

    def run(self, stop: threading.Event, *, sweep_interval_s: float = 5.0) -> None:
        idle_sleep = 0.005
        backoff = 0.5
        while not stop.is_set():
            try:
                if time.monotonic() - self._last_sweep >= sweep_interval_s:
                    self._last_sweep = time.monotonic()
                    self.sweep()
                    OUTBOX_PENDING.set(self.pending())
                count = self.publish_once()
                backoff = 0.5
                self.last_error = None
            except Exception as exc:
                # The broker or the database is away: keep the outbox, try again later.
                self.last_error = type(exc).__name__
                log.warning("relay: %s; retrying in %.1fs", exc, backoff)
                self._drop_producer()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if count == 0:
                stop.wait(idle_sleep)
                idle_sleep = min(idle_sleep * 2, _IDLE_SLEEP_MAX_S)
            else:
                idle_sleep = 0.005
        self._drop_producer()


def run(settings: Settings) -> int:
    import signal

    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    relay = OutboxRelay(settings)

    def readiness() -> dict[str, str]:
        error = relay.last_error
        return {
            "db": database_status(relay.engine),
            "publish": "ok" if error is None else f"error: {error}",
        }

    server = start_ops_server(settings.relay.metrics_port, readiness)
    log.info("relay publishing to %s", settings.kafka.bootstrap_servers)
    try:
        relay.run(stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        relay.engine.dispose()
    return 0
