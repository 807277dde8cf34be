"""Gateway fixtures: the real app over a real SQLite database, with the in-memory summarizer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from schema.settings import Settings
from tests.fixtures.gateway import make_settings, running_gateway


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with running_gateway(settings) as test_client:
        yield test_client
