"""Gateway fixtures: the real app over a real SQLite database, with the in-memory summarizer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.app import create_app
from schema.db import make_engine
from schema.settings import Settings, load_settings
from summarizer.testing import FakeSummarizer


def make_settings(url: str, **env: str) -> Settings:
    return load_settings(
        None,
        {
            "CONDENSE_DATABASE__URL": url,
            "CONDENSE_GATEWAY__SYNC_THRESHOLD_TOKENS": "200",
            "CONDENSE_GATEWAY__SYNC_MAX_TOKENS": "400",
            "CONDENSE_GATEWAY__MAX_TEXT_BYTES": "50000",
            "CONDENSE_NOTIFIER__ALLOW_LOOPBACK": "true",
            "CONDENSE_BATCHES__MAX_FILES": "5",
            **env,
        },
    )


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, summarizer_factory=lambda _settings: FakeSummarizer())
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 10
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway never became ready"
            time.sleep(0.02)
        yield test_client


def count_rows(url: str, model: Any) -> int:
    engine = make_engine(make_settings(url).database)
    with engine.connect() as conn:
        count: int = conn.execute(select(func.count()).select_from(model)).scalar_one()
    engine.dispose()
    return count


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body
