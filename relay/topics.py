"""The job topics, created by the relay before it first publishes."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from schema.settings import Settings


def ensure_topics(settings: Settings) -> list[str]:
    """Create the job topics that are missing; returns the names created."""
    kafka = settings.kafka
    # Without a bootstrap timeout an unreachable broker holds the round for kafka-python's 30 s
    # default: readiness keeps saying ok and SIGTERM waits that long.
    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        request_timeout_ms=kafka.request_timeout_ms,
        bootstrap_timeout_ms=kafka.request_timeout_ms,
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
                # Another relay created them between our listing and our request.
                pass
        return [topic.name for topic in wanted]
    finally:
        admin.close()
