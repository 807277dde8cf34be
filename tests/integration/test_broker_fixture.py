"""The broker fixtures start a real Kafka-protocol broker that behaves like the pipeline needs."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from relay.publisher import producer_config
from schema.settings import KafkaSettings, Settings
from tests.fixtures.broker import KafkaNames, TansuBroker, kafka_settings
from tests.fixtures.processes import descendants, pid_alive, process_tree_gone, wait_until_gone


def producer(settings: KafkaSettings) -> KafkaProducer:
    # The outbox relay's own producer, so the broker is tested the way the relay uses it.
    return KafkaProducer(**producer_config(Settings(kafka=settings)))


def consumer(settings: KafkaSettings, topic: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        request_timeout_ms=settings.request_timeout_ms,
    )


def drain(source: KafkaConsumer, want: int, timeout_s: float) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < want and time.monotonic() < deadline:
        for records in source.poll(timeout_ms=200).values():
            values.extend(record.value for record in records)
    return values


@pytest.fixture
def names_settings(kafka_broker: TansuBroker, kafka_names: KafkaNames) -> KafkaSettings:
    return kafka_settings(kafka_broker, kafka_names)


def test_kafka_settings_point_at_the_broker_with_fast_group_timings(
    kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    settings = kafka_settings(kafka_broker, kafka_names, partitions=2)

    assert settings.bootstrap_servers == kafka_broker.bootstrap_servers
    assert settings.bootstrap_servers.startswith("127.0.0.1:")
    assert (settings.topic, settings.bulk_topic, settings.consumer_group) == (
        kafka_names.topic,
        kafka_names.bulk_topic,
        kafka_names.consumer_group,
    )
    assert (settings.session_timeout_ms, settings.heartbeat_interval_ms) == (6_000, 500)
    assert settings.partitions == 2


def test_names_differ_between_tests(kafka_names: KafkaNames) -> None:
    # The session broker is shared: equal names would let one test consume another's messages.
    assert len({kafka_names.topic, kafka_names.bulk_topic, kafka_names.consumer_group}) == 3
    assert kafka_names.topic.rsplit(".", 1)[-1] == kafka_names.consumer_group.rsplit("-", 1)[-1]


def test_produce_and_consume_with_a_consumer_group(
    kafka_broker: TansuBroker, kafka_names: KafkaNames, names_settings: KafkaSettings
) -> None:
    kafka_broker.create_topic(kafka_names.topic, partitions=2)
    assert kafka_names.topic in kafka_broker.topics()
    sent = [f"job-{index}".encode() for index in range(20)]
    with_producer = producer(names_settings)
    try:
        for value in sent:
            with_producer.send(kafka_names.topic, value).get(timeout=10)
    finally:
        with_producer.close()

    first = consumer(names_settings, kafka_names.topic)
    try:
        received = drain(first, len(sent), timeout_s=30)
        first.commit()
        partitions = first.assignment()
    finally:
        first.close()

    assert sorted(received) == sorted(sent)
    # Both partitions went to the one member of the group.
    assert partitions == {TopicPartition(kafka_names.topic, 0), TopicPartition(kafka_names.topic, 1)}

    # The group's offsets live on the broker, where the next member of the group will resume from.
    # Asking without joining saves the ~3 s a second group join costs.
    reader = KafkaConsumer(
        bootstrap_servers=names_settings.bootstrap_servers,
        group_id=names_settings.consumer_group,
        enable_auto_commit=False,
    )
    try:
        committed = {tp: reader.committed(tp) for tp in partitions}
        ends = reader.end_offsets(list(partitions))
    finally:
        reader.close()
    assert committed == ends
    assert sum(ends.values()) == len(sent)


def test_restart_comes_back_empty_on_the_same_port(
    fresh_kafka_broker: TansuBroker, kafka_names: KafkaNames
) -> None:
    broker = fresh_kafka_broker
    port, old_pid = broker.port, broker.pid
    settings = kafka_settings(broker, kafka_names)
    broker.create_topic(kafka_names.topic)
    with_producer = producer(settings)
    try:
        with_producer.send(kafka_names.topic, b"lost").get(timeout=10)
    finally:
        with_producer.close()

    broker.restart()

    assert broker.port == port
    assert broker.pid != old_pid
    assert not pid_alive(old_pid)
    assert kafka_names.topic not in broker.topics()
    # The same address serves again: a client configured before the restart needs no change.
    broker.create_topic(kafka_names.topic)
    again = producer(settings)
    try:
        metadata = again.send(kafka_names.topic, b"after").get(timeout=10)
    finally:
        again.close()
    assert metadata.offset == 0


def test_stop_leaves_no_process_behind(fresh_kafka_broker: TansuBroker) -> None:
    pid = fresh_kafka_broker.pid
    children = descendants(pid)
    assert pid_alive(pid)

    fresh_kafka_broker.stop()

    assert wait_until_gone(pid, children, timeout_s=5)
    assert process_tree_gone(pid, children)
    assert not fresh_kafka_broker.running
    fresh_kafka_broker.stop()  # stopping twice is harmless
