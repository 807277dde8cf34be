"""The worker's Kafka consumer against the real tansu broker, with a stub in place of the executor.

The stub only records the ids it is handed, so these tests pin down what the consumer itself
promises: batch sizes, lane priority, and offsets committed only once the executor returned.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from schema.settings import Settings
from tests.fixtures.broker import KafkaNames, TansuBroker, kafka_settings
from workers.consumer import BatchConsumer

MAX_BATCH = 3
# Long enough for every step of a test, including a group join after a consumer left.
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Outcome:
    job_ids: tuple[str, ...]


@dataclass
class StubExecutor:
    """Records every call; the first ``fail_first`` calls raise, as a database outage would."""

    fail_first: int = 0
    before_return: Callable[[], None] | None = None
    calls: list[list[str]] = field(default_factory=list)

    def run(self, job_ids: list[str]) -> Outcome:
        self.calls.append(list(job_ids))
        if len(self.calls) <= self.fail_first:
            raise RuntimeError("executor down")
        if self.before_return is not None:
            self.before_return()
        return Outcome(tuple(job_ids))

    def seen(self) -> list[str]:
        return [job_id for call in self.calls for job_id in call]


@pytest.fixture
def settings(kafka_broker: TansuBroker, kafka_names: KafkaNames) -> Settings:
    # One partition each, so the order of a topic is the order of the ids in it.
    kafka_broker.create_topic(kafka_names.topic)
    kafka_broker.create_topic(kafka_names.bulk_topic)
    return Settings(
        kafka=kafka_settings(kafka_broker, kafka_names),
        worker={"max_batch": MAX_BATCH, "max_wait_ms": 100},
    )


@pytest.fixture
def consumers() -> Iterator[list[BatchConsumer]]:
    """Consumers a test made, closed afterwards so no group member lingers."""
    made: list[BatchConsumer] = []
    yield made
    for consumer in made:
        consumer.close()


def produce(settings: Settings, topic: str, count: int, prefix: str = "job") -> list[str]:
    ids = [f"{prefix}-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        for job_id in ids:
            producer.send(topic, value=job_id.encode())
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)
    return ids


def run_until(consumer: BatchConsumer, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, f"timed out after {TIMEOUT_S}s waiting for {what}"
        consumer.run_once()


def committed(settings: Settings, topic: str) -> int | None:
    """The interactive group's committed offset on partition 0 of ``topic``; None if none."""
    group = settings.kafka.consumer_group
    partition = TopicPartition(topic, 0)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=5_000)
    try:
        entry = admin.list_group_offsets({group: [partition]}).get(group, {}).get(partition)
    finally:
        admin.close()
    return None if entry is None or entry.offset < 0 else int(entry.offset)


def test_interactive_ids_arrive_in_batches_no_larger_than_max_batch(
    settings: Settings, consumers: list[BatchConsumer]
) -> None:
    ids = produce(settings, settings.kafka.topic, 10)
    executor = StubExecutor()
    consumer = BatchConsumer(settings, executor)  # type: ignore[arg-type]
    consumers.append(consumer)

    run_until(consumer, lambda: len(executor.seen()) >= len(ids), "all ids")

    assert executor.seen() == ids
    sizes = [len(call) for call in executor.calls]
    assert all(size <= MAX_BATCH for size in sizes), sizes
    # Ids that were all waiting are taken a full batch at a time, not one by one.
    assert MAX_BATCH in sizes, sizes


def test_interactive_ids_are_served_before_bulk_ids_that_waited_longer(
    settings: Settings, consumers: list[BatchConsumer]
) -> None:
    executor = StubExecutor()
    # A glance long enough that the priority cannot hinge on how busy the host is.
    consumer = BatchConsumer(settings, executor, interactive_glance_ms=1_000)  # type: ignore[arg-type]
    consumers.append(consumer)
    # Both lanes must hold their partitions first, or a lane still joining would simply be late.
    [warm_interactive] = produce(settings, settings.kafka.topic, 1, prefix="warm")
    [warm_bulk] = produce(settings, settings.kafka.bulk_topic, 1, prefix="warm")
    run_until(consumer, lambda: {warm_interactive, warm_bulk} <= set(executor.seen()), "the warm-up ids")
    executor.calls.clear()

    bulk = produce(settings, settings.kafka.bulk_topic, MAX_BATCH, prefix="bulk")
    interactive = produce(settings, settings.kafka.topic, MAX_BATCH, prefix="interactive")
    run_until(consumer, lambda: len(executor.seen()) >= 2 * MAX_BATCH, "both lanes")

    assert executor.calls == [interactive, bulk]


def test_offsets_are_committed_only_after_the_executor_returned(
    settings: Settings, consumers: list[BatchConsumer]
) -> None:
    topic = settings.kafka.topic
    ids = produce(settings, topic, MAX_BATCH)
    failing = StubExecutor(fail_first=1)
    first = BatchConsumer(settings, failing)  # type: ignore[arg-type]
    consumers.append(first)

    with pytest.raises(RuntimeError, match="executor down"):
        run_until(first, lambda: bool(failing.calls), "the first batch")
    first.close()

    assert failing.calls == [ids]
    after_failure = committed(settings, topic)
    assert after_failure is None

    # A new member of the same group is handed the same ids: nothing was committed for them.
    during: list[int | None] = []
    working = StubExecutor(before_return=lambda: during.append(committed(settings, topic)))
    second = BatchConsumer(settings, working)  # type: ignore[arg-type]
    consumers.append(second)
    run_until(second, lambda: bool(working.calls), "the redelivered batch")

    assert working.calls == [ids]
    assert during == [None]
    after_success = committed(settings, topic)
    assert after_success == len(ids)


def test_an_executor_exception_does_not_end_run(settings: Settings, consumers: list[BatchConsumer]) -> None:
    ids = produce(settings, settings.kafka.topic, MAX_BATCH)
    executor = StubExecutor(fail_first=1)
    outcomes: list[Outcome] = []
    consumer = BatchConsumer(settings, executor, on_outcome=outcomes.append)  # type: ignore[arg-type]
    consumers.append(consumer)
    stop = threading.Event()
    runner = threading.Thread(target=consumer.run, args=(stop,), name="consumer-run", daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not outcomes:
            assert runner.is_alive(), "run() ended after the executor raised"
            assert time.monotonic() < deadline, f"no batch succeeded within {TIMEOUT_S}s: {executor.calls}"
            time.sleep(0.05)
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(timeout=30)

    assert not runner.is_alive(), "run() did not stop when asked"
    # Failed, reconnected, and got the very same uncommitted ids again.
    assert executor.calls == [ids, ids]
    assert outcomes == [Outcome(tuple(ids))]
