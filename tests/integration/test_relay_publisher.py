"""The outbox publisher against a real broker and database: publish what is due, keep what is not,
notice a broker that lost its data."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from kafka import KafkaConsumer
from sqlalchemy import Engine, func, insert, select

from relay.app import Relay
from relay.publisher import OutboxPublisher, producer_config
from schema.models import jobs_table, outbox_table, utcnow
from schema.settings import DatabaseSettings, KafkaSettings, RelaySettings, Settings
from tests.builders import job_values
from tests.fixtures.broker import KafkaNames, TansuBroker, kafka_settings


def relay_settings(url: str, broker: TansuBroker, names: KafkaNames, **relay: Any) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        kafka=kafka_settings(broker, names),
        relay=RelaySettings(**{"requeue_after_s": 3_600, **relay}),
    )


def queue_jobs(engine: Engine, topic: str, count: int, available_at: datetime | None = None) -> list[str]:
    rows = [job_values() for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), rows)
        conn.execute(
            insert(outbox_table),
            [{"job_id": row["id"], "topic": topic, "available_at": available_at} for row in rows],
        )
    return [row["id"] for row in rows]


def outbox_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox_table)).scalar_one())


def publish_until_done(publisher: OutboxPublisher, timeout_s: float = 30) -> None:
    """What the relay's loop does: retry through broker errors, reconnecting, until the outbox is empty."""
    deadline = time.monotonic() + timeout_s
    while outbox_size(publisher.engine):
        assert time.monotonic() < deadline, "the outbox never drained"
        try:
            publisher.publish_once()
        except Exception:
            publisher.drop_producer()
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


def test_producer_config_follows_the_settings() -> None:
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers="kafka:9092", compression_type="none", request_timeout_ms=7_000
        ),
        relay=RelaySettings(linger_ms=20, send_retries=2),
    )

    config = producer_config(settings)

    assert config == {
        "bootstrap_servers": "kafka:9092",
        "acks": "all",
        "compression_type": None,
        "linger_ms": 20,
        "retries": 2,
        "request_timeout_ms": 7_000,
        "max_block_ms": 7_000,
    }
    assert producer_config(Settings())["compression_type"] == "lz4"


def test_outbox_entries_are_published_once_acknowledged(
    sqlite_url: str, kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    publisher = OutboxPublisher(relay_settings(sqlite_url, kafka_broker, kafka_names, batch_size=10))
    ids = queue_jobs(publisher.engine, kafka_names.topic, 25)

    assert publisher.publish_once() == 10, "one round publishes at most batch_size rows"
    publish_until_done(publisher)

    assert sorted(consumed_ids(kafka_broker, kafka_names.topic, 25)) == sorted(ids)
    assert publisher.published == 25
    assert publisher.lost_before is None


def test_a_scheduled_row_is_not_published_before_its_time(
    db_url: str, kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    publisher = OutboxPublisher(relay_settings(db_url, kafka_broker, kafka_names))
    now = utcnow()
    retry_at = now + timedelta(minutes=2)
    [later] = queue_jobs(publisher.engine, kafka_names.topic, 1, available_at=retry_at)
    [at_once] = queue_jobs(publisher.engine, kafka_names.topic, 1)

    assert publisher.publish_once(now) == 1
    assert publisher.publish_once(retry_at - timedelta(microseconds=1)) == 0
    assert publisher.pending(now) == 0, "a retry that is not due is not pending"
    assert outbox_size(publisher.engine) == 1
    assert consumed_ids(kafka_broker, kafka_names.topic, 1) == [at_once]

    assert publisher.publish_once(retry_at) == 1
    assert outbox_size(publisher.engine) == 0
    assert sorted(consumed_ids(kafka_broker, kafka_names.topic, 2)) == sorted([at_once, later])
    publisher.drop_producer()
    publisher.engine.dispose()


def test_a_broker_that_lost_its_data_gets_every_queued_job_again(
    sqlite_url: str, fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    relay = Relay(relay_settings(sqlite_url, fresh_kafka_broker, kafka_names))
    publisher = relay.publisher
    # Forty keys put ids on every partition, so the id published after the restart lands where
    # the broker acknowledged higher offsets before.
    lost = queue_jobs(relay.engine, kafka_names.topic, 40)
    publish_until_done(publisher)
    assert relay.sweep().republished == 0, "nothing is stale yet"
    fresh_kafka_broker.restart()
    queue_jobs(relay.engine, kafka_names.topic, 1)
    publish_until_done(publisher)
    assert publisher.lost_before is not None
    # Every job still queued when the loss came to light goes out again: the lost forty and the one
    # that revealed it (a duplicate the workers skip once it is done).
    assert relay.sweep().republished == 41
    assert publisher.lost_before is None, "repaired by one sweep under sweep_limit"
    publish_until_done(publisher)
    assert set(lost) <= set(consumed_ids(fresh_kafka_broker, kafka_names.topic, 41))
    assert relay.sweep().republished == 0, "republished once, not on every sweep"


def test_a_loss_larger_than_sweep_limit_is_repaired_over_several_sweeps(
    sqlite_url: str, fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    relay = Relay(relay_settings(sqlite_url, fresh_kafka_broker, kafka_names, sweep_limit=30))
    queue_jobs(relay.engine, kafka_names.topic, 40)
    publish_until_done(relay.publisher)
    fresh_kafka_broker.restart()
    queue_jobs(relay.engine, kafka_names.topic, 1)
    publish_until_done(relay.publisher)
    assert relay.publisher.lost_before is not None

    assert relay.sweep().republished == 30
    assert relay.publisher.lost_before is not None, "more jobs queued before the loss are left"
    assert relay.sweep().republished == 11
    assert relay.publisher.lost_before is None
