"""The outbox relay against a real broker and database: publish, notice data loss, sweep, purge."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from kafka import KafkaConsumer
from sqlalchemy import Engine, create_engine, func, insert, select

from gateway.relay import OutboxRelay
from schema.db import sync_url
from schema.models import (
    batches_table,
    deliveries_table,
    jobs_table,
    new_id,
    outbox_table,
    utcnow,
)
from schema.settings import Settings
from tests.builders import job_values
from tests.fixtures.broker import KafkaNames, TansuBroker, kafka_settings


def make_relay(url: str, broker: TansuBroker, names: KafkaNames, **worker: Any) -> OutboxRelay:
    settings = Settings(
        database={"url": url, "retention_days": 7},
        kafka=kafka_settings(broker, names),
        worker={"requeue_after_s": 3_600, **worker},
    )
    return OutboxRelay(settings, create_engine(sync_url(url)))


def queue_jobs(engine: Engine, topic: str, count: int) -> list[str]:
    rows = [job_values() for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), rows)
        conn.execute(insert(outbox_table), [{"job_id": row["id"], "topic": topic} for row in rows])
    return [row["id"] for row in rows]


def outbox_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox_table)).scalar_one())


def publish_until_done(relay: OutboxRelay, timeout_s: float = 30) -> None:
    """What run() does: retry through broker errors, reconnecting, until the outbox is empty."""
    deadline = time.monotonic() + timeout_s
    while outbox_size(relay.engine):
        assert time.monotonic() < deadline, "the outbox never drained"
        try:
            relay.publish_once()
        except Exception:
            relay._drop_producer()
            time.sleep(0.2)


def consumed_ids(broker: TansuBroker, topic: str, expected: int) -> list[str]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest", group_id=None
    )
    ids: list[str] = []
    deadline = time.monotonic() + 20
    while len(ids) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            ids.extend(record.value.decode() for record in batch)
    consumer.close()
    return ids


def test_outbox_entries_are_published_once_acknowledged(
    sqlite_url: str, fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    relay = make_relay(sqlite_url, fresh_kafka_broker, kafka_names)
    ids = queue_jobs(relay.engine, kafka_names.topic, 25)
    publish_until_done(relay)
    assert sorted(consumed_ids(fresh_kafka_broker, kafka_names.topic, 25)) == sorted(ids)
    assert relay.published == 25


def test_a_broker_that_lost_its_data_gets_every_queued_job_again(
    sqlite_url: str, fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    relay = make_relay(sqlite_url, fresh_kafka_broker, kafka_names)
    # Forty keys put ids on every partition, so the id published after the restart lands where
    # the broker acknowledged higher offsets before.
    lost = queue_jobs(relay.engine, kafka_names.topic, 40)
    publish_until_done(relay)
    assert relay.sweep() == 0, "nothing is stale yet"
    fresh_kafka_broker.restart()
    queue_jobs(relay.engine, kafka_names.topic, 1)
    publish_until_done(relay)
    # Every job still queued when the loss came to light goes out again: the lost forty and the one
    # that revealed it (a duplicate the workers skip once it is done).
    assert relay.sweep() == 41
    publish_until_done(relay)
    assert set(lost) <= set(consumed_ids(fresh_kafka_broker, kafka_names.topic, 41))
    assert relay.sweep() == 0, "republished once, not on every sweep"


def test_jobs_abandoned_while_running_are_queued_again(
    pg_url: str, fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    relay = make_relay(pg_url, fresh_kafka_broker, kafka_names, running_timeout_s=60)
    long_ago = utcnow() - timedelta(minutes=5)
    stuck = job_values(status="running", updated_at=long_ago)
    busy = job_values(status="running")
    with relay.engine.begin() as conn:
        conn.execute(insert(jobs_table), [stuck, busy])
    assert relay.sweep() == 1
    with relay.engine.connect() as conn:
        statuses = dict(conn.execute(select(jobs_table.c.id, jobs_table.c.status)).all())
        queued = conn.execute(select(outbox_table.c.job_id)).scalars().all()
    assert statuses == {stuck["id"]: "queued", busy["id"]: "running"}
    assert queued == [stuck["id"]]


def test_results_past_the_retention_period_are_purged(
    db_url: str, fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    relay = make_relay(db_url, fresh_kafka_broker, kafka_names)
    old = utcnow() - timedelta(days=8)
    batch_id = new_id()
    expired = job_values(status="succeeded", finished_at=old)
    expired_in_batch = job_values(status="failed", finished_at=old, batch_id=batch_id)
    recent = job_values(status="succeeded", finished_at=utcnow() - timedelta(days=1))
    still_queued = job_values(created_at=old, updated_at=utcnow())
    with relay.engine.begin() as conn:
        conn.execute(
            insert(batches_table),
            [
                {
                    "id": batch_id,
                    "tenant": "acme",
                    "status": "completed",
                    "total": 1,
                    "params": {},
                    "metadata": {},
                    "cancel_requested": False,
                    "created_at": old,
                    "finished_at": old,
                }
            ],
        )
        conn.execute(insert(jobs_table), [expired, expired_in_batch, recent, still_queued])
        conn.execute(
            insert(deliveries_table),
            [
                {
                    "id": new_id(),
                    "tenant": "acme",
                    "job_id": expired["id"],
                    "event_type": "summary.succeeded",
                    "channel": "webhook",
                    "target": "https://hooks.example.org/x",
                    "event_id": f"msg_{new_id()}",
                    "status": "succeeded",
                    "attempts": 1,
                }
            ],
        )
    relay.sweep()
    with relay.engine.connect() as conn:
        left = set(conn.execute(select(jobs_table.c.id)).scalars())
        deliveries = conn.execute(select(func.count()).select_from(deliveries_table)).scalar_one()
        batches = conn.execute(select(func.count()).select_from(batches_table)).scalar_one()
    assert left == {recent["id"], still_queued["id"]}
    assert deliveries == 0
    assert batches == 0
