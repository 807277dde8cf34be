"""End-to-end runs: the real gateway, relay, workers and broker as separate processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from condense.stack import Stack
from tests.fixtures.pipeline import Pipeline, PipelineFactory, start_pipeline


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[PipelineFactory]:
    stacks: list[Stack] = []

    def start(database_url: str, *, workers: int = 1, env: dict[str, str] | None = None) -> Pipeline:
        run = start_pipeline(tmp_path, database_url, workers=workers, env=env)
        stacks.append(run.stack)
        return run

    yield start
    for stack in stacks:
        stack.stop()
