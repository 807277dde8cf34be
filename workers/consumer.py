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

from common.metrics import CONSUMER_LAG
from schema.settings import Settings
from workers.execution import BatchOutcome, JobExecutor

log = logging.getLogger(__name__)

# A batch of long documents can take minutes; the group must not evict its member meanwhile.
_MAX_POLL_INTERVAL_MS = 30 * 60 * 1000
# How long the interactive lane is polled between bulk batches once it holds its partitions.
_INTERACTIVE_GLANCE_MS = 20


class BatchConsumer:
    """Two consumers, one per lane, so interactive jobs never queue behind a bulk upload.

    The interactive topic is polled first, briefly; the bulk topic only when it had nothing. Each
    lane has its own consumer group (``<group>`` and ``<group>.bulk``) so each keeps its own
    offsets. Pausing bulk partitions inside one consumer was tried first: kafka-python stopped
    fetching them for good after a resume, stalling uploads.
    """

    def __init__(
        self,
        settings: Settings,
        executor: JobExecutor,
        *,
        on_outcome: Callable[[BatchOutcome], None] | None = None,
        interactive_glance_ms: int = _INTERACTIVE_GLANCE_MS,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.on_outcome = on_outcome
        # Tests raise it: whether records already waiting arrive within 20 ms depends on how
        # busy the host is, and the lane priority they check must not hinge on that.
        self.interactive_glance_ms = interactive_glance_ms
        self._lanes: dict[str, KafkaConsumer] = {}
        self.batches = 0

    def _make_consumer(self, topic: str, group_id: str, *, fetch_max_wait_ms: int) -> KafkaConsumer:
        kafka = self.settings.kafka
        consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            request_timeout_ms=max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5_000),
            max_poll_records=self.settings.worker.max_batch,
            max_poll_interval_ms=_MAX_POLL_INTERVAL_MS,
            # Topics re-created after a broker lost its data must be noticed quickly.
            metadata_max_age_ms=5_000,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        consumer.subscribe([topic])
        return consumer

    def _connect(self) -> dict[str, KafkaConsumer]:
        if not self._lanes:
            kafka = self.settings.kafka
            self._lanes = {
                # The interactive lane is polled for a few milliseconds between bulk batches; a
                # broker holding its fetch for the default 500 ms would make it miss new jobs.
                "interactive": self._make_consumer(kafka.topic, kafka.consumer_group, fetch_max_wait_ms=5),
                "bulk": self._make_consumer(
                    kafka.bulk_topic, f"{kafka.consumer_group}.bulk", fetch_max_wait_ms=500
                ),
            }
        return self._lanes

    @property
    def connected(self) -> bool:
        return bool(self._lanes)

    def close(self) -> None:
        for consumer in self._lanes.values():
            try:
                consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("closing a consumer: %s", exc)
        self._lanes = {}

    def _poll_batch(self, consumer: KafkaConsumer, first_wait_ms: int) -> list[Any]:
        """Up to ``max_batch`` records, waiting at most ``max_wait_ms`` once the first arrived."""
        worker = self.settings.worker
        first = consumer.poll(timeout_ms=first_wait_ms, max_records=worker.max_batch)
        records = [record for batch in first.values() for record in batch]
        if not records:
            return records
        deadline = time.monotonic() + worker.max_wait_ms / 1000
        while len(records) < worker.max_batch:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = consumer.poll(timeout_ms=remaining_ms, max_records=worker.max_batch - len(records))
            records.extend(record for batch in more.values() for record in batch)
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
        lanes = self._connect()
        consumer = lanes["interactive"]
        # Until the interactive consumer holds its partitions, give its poll time to finish
        # joining the group; afterwards a glance between bulk batches is enough.
        first_wait_ms = self.interactive_glance_ms if consumer.assignment() else 1_000
        records = self._poll_batch(consumer, first_wait_ms=first_wait_ms)
        if not records:
            consumer = lanes["bulk"]
            records = self._poll_batch(consumer, first_wait_ms=400)
        for lane in lanes.values():
            self._report_lag(lane)
        if not records:
            return None
        job_ids = [record.value.decode() for record in records if record.value]
        # Should this raise, the offsets stay uncommitted and run() reconnects: the group hands the
        # same ids out again.
        outcome = self.executor.run(job_ids)
        consumer.commit()
        self.batches += 1
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
