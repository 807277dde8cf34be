"""Publishes due outbox rows to Kafka, and notices a broker that lost what it acknowledged.

A job id leaves the outbox only after the broker acknowledged it (``acks=all``); a crash in
between publishes it twice, which workers tolerate (they skip jobs that are already final).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine

from relay.topics import ensure_topics
from schema.db import make_engine
from schema.models import utcnow
from schema.settings import Settings
from schema.store import outbox

log = logging.getLogger(__name__)


def producer_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the relay's ``KafkaProducer``."""
    kafka = settings.kafka
    relay = settings.relay
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        # Nothing counts as published before every in-sync replica has it.
        "acks": "all",
        "compression_type": None if kafka.compression_type == "none" else kafka.compression_type,
        "linger_ms": relay.linger_ms,
        "retries": relay.send_retries,
        "request_timeout_ms": kafka.request_timeout_ms,
        # send() must not block past a round's own deadline when the broker is away.
        "max_block_ms": kafka.request_timeout_ms,
    }


class OutboxPublisher:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database)
        self._producer: KafkaProducer | None = None
        self.published = 0
        # Highest offset the broker acknowledged per partition: a later one not above it means the
        # log was reset (a broker that lost its data), and every queued job must be published again.
        # Only partitions that held our ids before can show it; end offsets (ListOffsets) would
        # cover the rest, but the embedded tansu broker miscounts them for compressed batches.
        self._acknowledged: dict[tuple[str, int], int] = {}
        self._lost_before: datetime | None = None

    @property
    def lost_before(self) -> datetime | None:
        """When the broker was last found to have lost ids: jobs queued before then need publishing
        again. None while no loss is waiting to be repaired."""
        return self._lost_before

    def loss_handled(self, before: datetime) -> None:
        """The sweeper republished every job queued before ``before``."""
        # A loss noticed after the sweeper read ``lost_before`` stays to be repaired.
        if self._lost_before == before:
            self._lost_before = None

    def _lost_data(self, why: str, now: datetime) -> None:
        if self._lost_before is None:
            log.warning("the broker lost published job ids (%s); republishing every queued job", why)
        self._lost_before = now

    def connect(self, now: datetime | None = None) -> None:
        """Make sure of the topics and the producer now, not at the first job: workers that find
        their topics at start hold their partitions before any job arrives, instead of joining the
        group when the first job's publication creates the topics."""
        self._connect(now or utcnow())

    def _connect(self, now: datetime) -> KafkaProducer:
        if self._producer is None:
            created = ensure_topics(self.settings)
            vanished = {topic for topic, _partition in self._acknowledged}.intersection(created)
            if vanished:
                self._lost_data(f"topics {sorted(vanished)} had vanished", now)
            self._producer = KafkaProducer(**producer_config(self.settings))
        return self._producer

    def drop_producer(self) -> None:
        """Close the producer; the next round connects again (and checks the topics again)."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # noqa: S110 - a broken producer is replaced either way
                pass
            self._producer = None

    def publish_once(self, now: datetime | None = None) -> int:
        """Publish up to ``relay.batch_size`` rows due at ``now``; returns how many were published.

        Raises ``KafkaError`` when the broker did not acknowledge some of them: those stay in the
        outbox for the next round.
        """
        now = now or utcnow()
        with self.engine.begin() as conn:
            rows = outbox.take_due(conn, now=now, limit=self.settings.relay.batch_size)
            if not rows:
                return 0
            producer = self._connect(now)
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
                        f"{partition[0]}[{partition[1]}] went back to offset {acknowledged.offset}", now
                    )
                    self._acknowledged.clear()
                self._acknowledged[partition] = max(
                    acknowledged.offset, self._acknowledged.get(partition, -1)
                )
            outbox.delete_published(conn, sent)
        self.published += len(sent)
        if len(sent) < len(rows):
            raise KafkaError(f"{len(rows) - len(sent)} of {len(rows)} job ids were not acknowledged")
        return len(sent)

    def pending(self, now: datetime | None = None) -> int:
        """Outbox rows due at ``now`` and not yet published."""
        with self.engine.connect() as conn:
            return outbox.count_pending(conn, now=now or utcnow())
