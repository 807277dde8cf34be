"""The low-latency path through HTTP: right answer per request, 503 when full, 504 past deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from schema.models import SummaryJob
from summarizer.errors import InvalidDocumentError
from summarizer.testing import FakeSummarizer
from tests.fixtures.gateway import assert_error, count_rows, make_settings


def start(sqlite_url: str, fake: FakeSummarizer, **env: str) -> TestClient:
    settings = make_settings(sqlite_url, **env)
    return TestClient(create_app(settings, summarizer_factory=lambda _settings: fake))


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def slow_client(sqlite_url: str) -> Iterator[TestClient]:
    fake = FakeSummarizer(
        sleep_per_chunk_s=0.2, words_per_chunk=50, failures={"POISON": InvalidDocumentError("unreadable")}
    )
    with start(
        sqlite_url,
        fake,
        CONDENSE_GATEWAY__MICRO_BATCH__MAX_QUEUE="4",
        CONDENSE_GATEWAY__MICRO_BATCH__MAX_BATCH="2",
    ) as client:
        wait_ready(client)
        yield client


def test_every_concurrent_request_gets_its_own_summary(sqlite_url: str) -> None:
    fake = FakeSummarizer(sleep_per_chunk_s=0.01)
    with start(sqlite_url, fake, CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS="5") as client:
        wait_ready(client)
        texts = [f"Request {i} says hello. It has its own words number {i}." for i in range(64)]

        def post(text: str) -> dict[str, Any]:
            response = client.post("/v1/summaries", json={"text": text, "mode": "sync"})
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(post, texts))
    for text, answer in zip(texts, answers, strict=True):
        assert answer["summary"] == " ".join(text.split()[:100])
        assert answer["route"] == "sync"
    # They really were batched together, not run one by one.
    assert max(len(call) for call in fake.calls) > 1
    assert count_rows(sqlite_url, SummaryJob) == 64


def test_a_bad_document_fails_alone_in_its_batch(slow_client: TestClient) -> None:
    texts = ["A good first document. Fine.", "POISON in this one.", "Another good one. Also fine."]
    with ThreadPoolExecutor(max_workers=3) as pool:
        responses = list(
            pool.map(lambda t: slow_client.post("/v1/summaries", json={"text": t, "mode": "sync"}), texts)
        )
    assert [r.status_code for r in responses] == [200, 422, 200]
    assert responses[1].json()["error"]["code"] == "invalid_document"


def test_a_full_queue_answers_503_with_retry_after(slow_client: TestClient, sqlite_url: str) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(
            pool.map(
                lambda i: slow_client.post(
                    "/v1/summaries", json={"text": f"Document {i}. Words.", "mode": "sync"}
                ),
                range(16),
            )
        )
    statuses = [r.status_code for r in responses]
    assert 503 in statuses and 200 in statuses
    rejected = next(r for r in responses if r.status_code == 503)
    assert_error(rejected, 503, "overloaded")
    assert int(rejected.headers["retry-after"]) >= 1
    assert count_rows(sqlite_url, SummaryJob) == statuses.count(200)


def test_past_its_deadline_a_request_gets_504_and_stores_nothing(
    slow_client: TestClient, sqlite_url: str
) -> None:
    text = " ".join(f"word{i}" for i in range(300))  # six slow chunks in the fake
    response = slow_client.post("/v1/summaries", json={"text": text, "mode": "sync", "timeout_s": 0.5})
    assert_error(response, 504, "deadline_exceeded")
    assert count_rows(sqlite_url, SummaryJob) == 0
    # The slot was freed: the next request is served.
    assert slow_client.post("/v1/summaries", json={"text": "Short. Text.", "mode": "sync"}).status_code == 200
