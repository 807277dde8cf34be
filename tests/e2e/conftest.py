"""End-to-end runs: the real gateway, relay, workers and broker as separate processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from condense.stack import Stack, free_port
from tests.fixtures.pipeline import MODEL_CACHE, Pipeline, PipelineFactory


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[PipelineFactory]:
    stacks: list[Stack] = []

    def start(database_url: str, *, workers: int = 1, env: dict[str, str] | None = None) -> Pipeline:
        port = free_port()
        stack = Stack(
            tmp_path,
            {
                "CONDENSE_DATABASE__URL": database_url,
                "CONDENSE_DATA_DIR": str(tmp_path),
                "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{tmp_path}/celery.db",
                "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
                "CONDENSE_KAFKA__SESSION_TIMEOUT_MS": "6000",
                "CONDENSE_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
                "CONDENSE_KAFKA__TOPIC": f"jobs-{port}",
                "CONDENSE_KAFKA__BULK_TOPIC": f"bulk-{port}",
                "CONDENSE_KAFKA__CONSUMER_GROUP": f"workers-{port}",
                "CONDENSE_NOTIFIER__ALLOW_LOOPBACK": "true",
                **(env or {}),
            },
        )
        stacks.append(stack)
        stack.broker()
        stack.condense("gateway", "gateway", "--port", str(port))
        stack.condense("relay", "relay")
        for index in range(workers):
            stack.condense(f"worker-{index}", "worker")
        stack.wait_ready(port)
        return Pipeline(stack, port)

    yield start
    for stack in stacks:
        stack.stop()
