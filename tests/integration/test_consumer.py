"""The worker's Kafka consumer against the real tansu broker, with a stub in place of the executor.

The stub only records the ids it is handed, so these tests pin down what the consumer itself
promises: batch sizes, lane priority, offsets committed only once the executor returned, and a
stalled lane healing itself (the stall checks read real job rows; time is a fake clock).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from schema.db import make_engine
from schema.models import JobStatus, Lane, utcnow
from schema.settings import DatabaseSettings, KafkaSettings, Settings, WorkerSettings
from schema.store import jobs, outbox, queue
from tests.fixtures.broker import KafkaNames, TansuBroker, kafka_settings
from tests.fixtures.clock import FakeClock
from workers.consumer import BatchConsumer, BatchFailedError, in_group, store_probe

MAX_BATCH = 3
# Long enough for every step of a test, including a group join after a consumer left.
TIMEOUT_S = 60.0
STALL_AFTER_S = 30.0
TOPIC_FOR = {"interactive": "unused", "bulk": "unused.bulk"}


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


def settings_on(broker: TansuBroker, names: KafkaNames) -> Settings:
    # One partition each, so the order of a topic is the order of the ids in it.
    broker.create_topic(names.topic)
    broker.create_topic(names.bulk_topic)
    return Settings(
        kafka=kafka_settings(broker, names),
        worker=WorkerSettings(max_batch=MAX_BATCH, max_wait_ms=100, stall_after_s=STALL_AFTER_S),
    )


@pytest.fixture
def settings(kafka_broker: TansuBroker, kafka_names: KafkaNames) -> Settings:
    return settings_on(kafka_broker, kafka_names)


@pytest.fixture
def consumers() -> Iterator[list[BatchConsumer]]:
    """Consumers a test made, closed afterwards so no group member lingers."""
    made: list[BatchConsumer] = []
    yield made
    for consumer in made:
        consumer.close()


def produce(
    settings: Settings, topic: str, count: int, prefix: str = "job", partition: int | None = None
) -> list[str]:
    ids = [f"{prefix}-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    produce_ids(settings, topic, ids, partition)
    return ids


def produce_ids(settings: Settings, topic: str, ids: list[str], partition: int | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        sent = [producer.send(topic, value=job_id.encode(), partition=partition) for job_id in ids]
        producer.flush(timeout=10)
        for future in sent:
            future.get(timeout=10)
    finally:
        producer.close(timeout=5)


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


def test_an_idle_consumer_finishes_joining_both_groups(
    kafka_broker: TansuBroker,
    kafka_names: KafkaNames,
    consumers: list[BatchConsumer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The broker holds each JoinGroup for seconds, longer than any poll of an idle loop. kafka-python
    # throws away a join that completes between two polls, so before the consumer waited for joins
    # in flight, an idle worker (no job ever sent) rejoined its groups again and again, never
    # holding its partitions, and never settled into its quiet idle wait. The real run loop, with
    # its idle pauses between polls, is what must get there, with the shipped session and
    # heartbeat settings (the broker answers a join at a heartbeat's pace).
    defaults = KafkaSettings()
    settings = settings_on(kafka_broker, kafka_names).model_copy(
        update={
            "kafka": kafka_settings(
                kafka_broker,
                kafka_names,
                session_timeout_ms=defaults.session_timeout_ms,
                heartbeat_interval_ms=defaults.heartbeat_interval_ms,
            )
        }
    )
    consumer = BatchConsumer(settings, StubExecutor())  # type: ignore[arg-type]
    consumers.append(consumer)
    caplog.set_level(logging.INFO, logger="kafka.coordinator")
    stop = threading.Event()
    loop = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    loop.start()
    try:
        joined = False
        deadline = time.monotonic() + TIMEOUT_S
        while not joined and time.monotonic() < deadline:
            stop.wait(0.5)
            lanes = list(consumer._lanes.values())
            joined = len(lanes) == 2 and all(in_group(lane.consumer) for lane in lanes)
        assert joined, f"the lanes did not join their groups within {TIMEOUT_S}s of idling"
        assert all(lane.consumer.assignment() for lane in lanes)
        # One join per group: an answer that came in between two polls and was thrown away shows
        # up as a second "joined" for the same group.
        joins = [
            r.getMessage().split()[3] for r in caplog.records if "Successfully joined group" in r.getMessage()
        ]
        assert sorted(joins) == sorted(lane.group_id for lane in lanes), joins
    finally:
        stop.set()
        loop.join(timeout=30)


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

    with pytest.raises(BatchFailedError, match="executor down"):
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


# -- stalls --------------------------------------------------------------------------------------


def recoveries(lane: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "condense_kafka_consumer_recoveries_total", {"lane": lane, "reason": reason}
    )
    return value or 0.0


def published_job(engine: Engine, *, queued_for: timedelta) -> str:
    """A queued job the relay has already handed to Kafka (its outbox row is gone)."""
    job = jobs.new_job(tenant="t", text="a long document", updated_at=utcnow() - queued_for)
    with engine.begin() as conn:
        jobs.insert_jobs(conn, [job], topic_for=TOPIC_FOR)
        rows = outbox.take_due(conn, now=utcnow(), limit=10)
        outbox.delete_published(conn, [row.id for row in rows if row.job_id == job.id])
    return job.id


def test_a_position_past_the_end_of_the_log_moves_back_to_the_committed_offset(
    settings: Settings, consumers: list[BatchConsumer]
) -> None:
    done = produce(settings, settings.kafka.topic, MAX_BATCH, prefix="done")
    executor = StubExecutor()
    consumer = BatchConsumer(settings, executor)  # type: ignore[arg-type]
    consumers.append(consumer)
    run_until(consumer, lambda: executor.seen() == done, "the first ids")
    before = recoveries("interactive", "past_log_end")
    # Where a consumer sits after its broker came back with a shorter log: no fetch errors, no data.
    consumer.lane_consumer("interactive").seek(TopicPartition(settings.kafka.topic, 0), 1_000)

    new = produce(settings, settings.kafka.topic, 2, prefix="new")
    run_until(consumer, lambda: len(executor.seen()) >= len(done) + len(new), "the new ids")

    # Back at the committed offset, not the beginning: nothing already done came again.
    assert executor.seen() == done + new
    assert recoveries("interactive", "past_log_end") == before + 1


def test_after_the_broker_came_back_empty_the_new_log_is_read_from_the_beginning(
    fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames, consumers: list[BatchConsumer]
) -> None:
    settings = settings_on(fresh_kafka_broker, kafka_names)
    old_position = 10 * MAX_BATCH
    done = produce(settings, settings.kafka.topic, old_position, prefix="done")
    executor = StubExecutor()
    consumer = BatchConsumer(settings, executor)  # type: ignore[arg-type]
    consumers.append(consumer)
    run_until(consumer, lambda: executor.seen() == done, "the first ids")
    before = recoveries("interactive", "past_log_end")

    fresh_kafka_broker.restart()
    fresh_kafka_broker.create_topic(settings.kafka.topic)
    fresh_kafka_broker.create_topic(settings.kafka.bulk_topic)
    # tansu may drop records acknowledged soon after an empty restart while clients from before it
    # are connected, so ids go one at a time until one arrives. Fewer than the old position: a
    # consumer still waiting past the end would never see any of them.
    new: list[str] = []
    while not set(new) & set(executor.seen()):
        assert len(new) < old_position // 2, f"none of {len(new)} ids produced after the restart arrived"
        new += produce(settings, settings.kafka.topic, 1, prefix="new")
        for _ in range(4):
            consumer.run_once()

    assert set(executor.seen()[len(done) :]) <= set(new)
    assert recoveries("interactive", "past_log_end") >= before + 1


def test_a_caught_up_lane_that_never_receives_a_waiting_job_rejoins_and_gets_it(
    kafka_broker: TansuBroker, kafka_names: KafkaNames, pg_url: str, consumers: list[BatchConsumer]
) -> None:
    # Two partitions: ids keep flowing on one while the other is held and never read, which is how
    # the group left a survivor after a member was killed -9 (it kept polling, never got the rest).
    kafka_broker.create_topic(kafka_names.topic, partitions=2)
    settings = settings_on(kafka_broker, kafka_names)
    topic = settings.kafka.topic
    engine = make_engine(DatabaseSettings(url=pg_url))
    clock = FakeClock()
    executor = StubExecutor()
    consumer = BatchConsumer(
        settings,
        executor,  # type: ignore[arg-type]
        probe=store_probe(engine, heartbeat_s=5),
        clock=clock,
        jitter=lambda: 0.0,
    )
    consumers.append(consumer)
    try:
        warm = produce(settings, topic, 1, prefix="warm", partition=0)
        warm += produce(settings, topic, 1, prefix="warm", partition=1)
        run_until(consumer, lambda: set(warm) <= set(executor.seen()), "the warm-up ids")
        consumer.lane_consumer("interactive").pause(TopicPartition(topic, 1))

        # Waiting longer than stall_after_s, under ten times it, while another worker is busy.
        waiting = published_job(engine, queued_for=timedelta(seconds=4 * STALL_AFTER_S))
        other = jobs.new_job(tenant="t", text="another document")
        with engine.begin() as conn:
            jobs.insert_jobs(conn, [other], topic_for=TOPIC_FOR)
            assert jobs.claim(conn, [other.id], max_claims=3).running
        produce_ids(settings, topic, [waiting], partition=1)
        before = recoveries("interactive", "stalled")

        def step(seconds: float) -> None:
            # New ids keep coming on the other partition: the lane is caught up, never quiet.
            clock.advance(seconds)
            stream = produce(settings, topic, 1, prefix="stream", partition=0)
            run_until(consumer, lambda: set(stream) <= set(executor.seen()), "the stream")
            for _ in range(3):
                consumer.run_once()

        for _ in range(4):
            step(6)
        # Another worker is busy on the lane, so the job may be in its backlog: no rejoin yet.
        assert recoveries("interactive", "stalled") == before
        assert waiting not in executor.seen()

        with engine.begin() as conn:
            jobs.finish(conn, other.id, jobs.Outcome(JobStatus.SUCCEEDED, summary="done"))
        step(6)  # the first check that finds it missed only suspects it
        assert recoveries("interactive", "stalled") == before
        step(6)
        assert recoveries("interactive", "stalled") == before + 1
        run_until(consumer, lambda: waiting in executor.seen(), "the waiting id after the rejoin")
    finally:
        engine.dispose()


def test_a_job_kafka_lost_is_run_from_the_database_once_a_rejoin_did_not_bring_it(
    settings: Settings, pg_url: str, consumers: list[BatchConsumer]
) -> None:
    engine = make_engine(DatabaseSettings(url=pg_url))
    clock = FakeClock()
    executor = StubExecutor()
    consumer = BatchConsumer(
        settings,
        executor,  # type: ignore[arg-type]
        probe=store_probe(engine, heartbeat_s=5),
        clock=clock,
        jitter=lambda: 0.0,
    )
    consumers.append(consumer)
    try:
        # Published as far as the database knows, but the broker never kept it (tansu drops records
        # acknowledged soon after an empty restart while older clients stay connected).
        lost = published_job(engine, queued_for=timedelta(seconds=2 * STALL_AFTER_S))
        rejoined = recoveries("interactive", "stalled")
        ran = recoveries("interactive", "stalled_after_rejoin")

        def step() -> None:
            clock.advance(6)
            stream = produce(settings, settings.kafka.topic, 1, prefix="stream")
            run_until(consumer, lambda: set(stream) <= set(executor.seen()), "the stream")
            for _ in range(3):
                consumer.run_once()

        step()  # suspected
        step()  # confirmed: rejoin
        assert recoveries("interactive", "stalled") == rejoined + 1
        assert lost not in executor.seen()
        step()  # suspected again by the rejoined lane
        step()  # confirmed: run from the database
        assert recoveries("interactive", "stalled_after_rejoin") == ran + 1
        # Run on its own, from its row; the lane's own ids came again from the beginning besides.
        assert [lost] in executor.calls
    finally:
        engine.dispose()


def test_the_stall_probe_lists_only_work_a_consumer_should_have_received(engine: Engine) -> None:
    now = utcnow()
    alive_since = now - timedelta(seconds=60)

    def probe(lane: str = Lane.INTERACTIVE.value) -> queue.LaneQueue:
        with engine.connect() as conn:
            return queue.lane_queue(conn, lane, now=now, alive_since=alive_since)

    assert probe() == queue.LaneQueue(waiting=[], busy=False)

    unpublished = jobs.new_job(tenant="t", text="x", updated_at=now - timedelta(seconds=500))
    published = jobs.new_job(tenant="t", text="x", updated_at=now - timedelta(seconds=200))
    retry_ahead = jobs.new_job(
        tenant="t", text="x", updated_at=now - timedelta(seconds=900), retry_at=now + timedelta(seconds=5)
    )
    retry_due = jobs.new_job(
        tenant="t", text="x", updated_at=now - timedelta(seconds=900), retry_at=now - timedelta(seconds=300)
    )
    bulk = jobs.new_job(tenant="t", text="x", lane="bulk", updated_at=now - timedelta(seconds=700))
    alive = jobs.new_job(tenant="t", text="x")
    abandoned = jobs.new_job(tenant="t", text="x")
    with engine.begin() as conn:
        jobs.insert_jobs(
            conn,
            [unpublished, published, retry_ahead, retry_due, bulk, alive, abandoned],
            topic_for=TOPIC_FOR,
        )
        rows = outbox.take_due(conn, now=now, limit=100)
        outbox.delete_published(conn, [row.id for row in rows if row.job_id != unpublished.id])
        jobs.claim(conn, [alive.id], max_claims=3, now=now - timedelta(seconds=10))
        jobs.claim(conn, [abandoned.id], max_claims=3, now=now - timedelta(seconds=1_000))

    state = probe()
    # Oldest first. Left out: the job the relay has not published, the retry not due yet, the job
    # whose worker still beats, and the other lane's job. A due retry counts from its retry time.
    assert [(job.id, job.abandoned) for job in state.waiting] == [
        (abandoned.id, True),
        (retry_due.id, False),
        (published.id, False),
    ]
    assert [round((now - job.since).total_seconds()) for job in state.waiting] == [1_000, 300, 200]
    assert state.busy
    assert [job.id for job in probe(Lane.BULK.value).waiting] == [bulk.id]
    assert not probe(Lane.BULK.value).busy
