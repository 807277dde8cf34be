"""The Kafka side of a worker: pull job ids in batches with a consumer group, commit after storing.

Offsets are committed only after the batch's results are committed to the database, so a worker
killed mid-batch loses nothing: its partitions move to another member, which receives the same ids
again and finds the jobs still open (or already finished, and skips them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer

from schema.metrics import CONSUMER_LAG
from schema.settings import Settings
from workers.execution import BatchOutcome, JobExecutor

log = logging.getLogger(__name__)

# A batch of long documents can take minutes; the group must not evict its member meanwhile.
_MAX_POLL_INTERVAL_MS = 30 * 60 * 1000


class BatchConsumer:
    def __init__(
        self,
        settings: Settings,
        executor: JobExecutor,
        *,
        on_outcome: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.on_outcome = on_outcome
        self._consumer: KafkaConsumer | None = None
        self._lane = "mixed"
        self.batches = 0
        self.jobs_seen = 0

    def _connect(self) -> KafkaConsumer:
        if self._consumer is None:
            kafka = self.settings.kafka
            consumer = KafkaConsumer(
                bootstrap_servers=kafka.bootstrap_servers,
                group_id=kafka.consumer_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=kafka.session_timeout_ms,
                heartbeat_interval_ms=kafka.heartbeat_interval_ms,
                request_timeout_ms=max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5_000),
                max_poll_records=self.settings.worker.max_batch,
                max_poll_interval_ms=_MAX_POLL_INTERVAL_MS,
                # Topics re-created after a broker lost its data must be noticed quickly.
                metadata_max_age_ms=5_000,
            )
            consumer.subscribe([kafka.topic, kafka.bulk_topic])
            self._consumer = consumer
        return self._consumer

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("closing the consumer: %s", exc)
            self._consumer = None

    def _poll_first(self, consumer: KafkaConsumer) -> list[Any]:
        """Interactive jobs first: bulk partitions are paused while the interactive topic has work."""
        worker = self.settings.worker
        bulk = [tp for tp in consumer.assignment() if tp.topic == self.settings.kafka.bulk_topic]
        if bulk:
            consumer.pause(*bulk)
            interactive = consumer.poll(timeout_ms=20, max_records=worker.max_batch)
            consumer.resume(*bulk)
            records = [record for batch in interactive.values() for record in batch]
            if records:
                self._lane = "interactive"
                return records
        polled = consumer.poll(timeout_ms=500, max_records=worker.max_batch)
        records = [record for batch in polled.values() for record in batch]
        self._lane = "mixed"
        return records

    def _poll_batch(self, consumer: KafkaConsumer) -> list[Any]:
        """Up to ``max_batch`` records, waiting at most ``max_wait_ms`` once the first arrived."""
        worker = self.settings.worker
        records = self._poll_first(consumer)
        if not records:
            return records
        deadline = time.monotonic() + worker.max_wait_ms / 1000
        bulk = [tp for tp in consumer.assignment() if tp.topic == self.settings.kafka.bulk_topic]
        if self._lane == "interactive" and bulk:
            consumer.pause(*bulk)
        try:
            while len(records) < worker.max_batch:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    break
                more = consumer.poll(timeout_ms=remaining_ms, max_records=worker.max_batch - len(records))
                for batch in more.values():
                    records.extend(batch)
        finally:
            if self._lane == "interactive" and bulk:
                consumer.resume(*bulk)
        return records

    @staticmethod
    def _report_lag(consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            lag = max(0, highwater - consumer.position(tp))
            CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def run_once(self) -> BatchOutcome | None:
        consumer = self._connect()
        records = self._poll_batch(consumer)
        self._report_lag(consumer)
        if not records:
            return None
        job_ids = [record.value.decode() for record in records if record.value]
        # Should this raise, the offsets stay uncommitted and run() reconnects: the group hands the
        # same ids out again.
        outcome = self.executor.run(job_ids)
        consumer.commit()
        self.batches += 1
        self.jobs_seen += len(job_ids)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                self.run_once()
                backoff = 0.5
            except Exception as exc:
                log.warning("consumer: %s; retrying in %.1fs", exc, backoff, exc_info=log.isEnabledFor(10))
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.close()
