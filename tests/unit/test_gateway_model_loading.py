"""While the model loads, queued work is accepted (params checked from the settings) and sync is a 503."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.state import MODEL_LOADING_RETRY_AFTER_S
from schema.models import Batch, OutboxEntry, SummaryJob
from schema.settings import Settings
from summarizer import Summarizer
from summarizer.errors import SummarizerConfigError
from summarizer.testing import FakeSummarizer
from tests.fixtures.gateway import assert_error, count_rows, make_settings

SHORT = "Kafka carries ids. The database keeps the text. Workers pull batches and store results."


class HeldLoad:
    """A model factory that does not return until ``release()``: the gateway stays in its loading phase."""

    def __init__(self, *, fail: bool = False) -> None:
        self._released = threading.Event()
        self._fail = fail

    def __call__(self, _settings: Settings) -> Summarizer:
        # Bounded, so a test that forgets to release cannot hang the run.
        self._released.wait(timeout=60)
        if self._fail:
            raise SummarizerConfigError("summarizer.model: the weights are gone")
        return FakeSummarizer()

    def release(self) -> None:
        self._released.set()


@contextmanager
def loading_gateway(settings: Settings, load: HeldLoad) -> Iterator[TestClient]:
    app = create_app(settings, summarizer_factory=load)
    try:
        with TestClient(app) as client:
            yield client
            # Let the load end before shutdown waits for its thread.
            load.release()
    finally:
        load.release()


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "the gateway never got there"
        time.sleep(0.02)


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url)


def test_async_and_auto_jobs_are_queued_while_the_model_loads(settings: Settings, sqlite_url: str) -> None:
    with loading_gateway(settings, HeldLoad()) as client:
        queued = client.post("/v1/summaries", json={"text": SHORT, "mode": "async"})
        assert queued.status_code == 202, queued.text
        # Auto would answer this short text at once with a model; without one it goes to a worker.
        auto = client.post("/v1/summaries", json={"text": SHORT, "params": {"max_sentences": 2}})
        assert auto.status_code == 202, auto.text
        assert auto.json()["route"] == "async"
        # The defaults the loaded model would fill are filled from the settings.
        assert queued.json()["params"] == {"max_words": settings.summarizer.default_max_words}
        assert auto.json()["params"] == {
            "max_words": settings.summarizer.default_max_words,
            "max_sentences": 2,
        }
        polled = client.get(f"/v1/summaries/{queued.json()['id']}")
        assert polled.status_code == 200
        assert polled.json()["status"] == "queued"
    assert count_rows(sqlite_url, SummaryJob) == 2
    assert count_rows(sqlite_url, OutboxEntry) == 2


@pytest.mark.parametrize(
    "params",
    [{"max_new_tokens": 50}, {"max_words": 0}, {"max_words": "100"}, {"temperature": 0.7}],
)
def test_params_are_still_checked_while_the_model_loads(
    settings: Settings, sqlite_url: str, params: dict[str, object]
) -> None:
    with loading_gateway(settings, HeldLoad()) as client:
        response = client.post("/v1/summaries", json={"text": SHORT, "mode": "async", "params": params})
        assert_error(response, 422, "invalid_params")
        files = {"files": ("a.txt", b"One sentence. Another one.", "text/plain")}
        response = client.post("/v1/batches", files=files, data={"params": json.dumps(params)})
        assert_error(response, 422, "invalid_params")
    assert count_rows(sqlite_url, SummaryJob) == 0
    assert count_rows(sqlite_url, Batch) == 0


def test_sync_while_the_model_loads_is_a_503_with_retry_after(settings: Settings, sqlite_url: str) -> None:
    with loading_gateway(settings, HeldLoad()) as client:
        response = client.post("/v1/summaries", json={"text": SHORT, "mode": "sync"})
        assert_error(response, 503, "temporarily_unavailable")
        assert response.headers["retry-after"] == str(round(MODEL_LOADING_RETRY_AFTER_S))
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["model"] == "loading"
        assert int(ready.headers["retry-after"]) >= 1
    assert count_rows(sqlite_url, SummaryJob) == 0


def test_a_batch_is_accepted_while_the_model_loads(settings: Settings, sqlite_url: str) -> None:
    files = [
        ("files", ("a.txt", b"One sentence. Another one.", "text/plain")),
        (
            "files",
            ("b.jsonl", b'{"custom_id": "b", "text": "Third one.", "params": {"max_sentences": 1}}\n', "x"),
        ),
    ]
    with loading_gateway(settings, HeldLoad()) as client:
        response = client.post("/v1/batches", files=files, data={"params": '{"max_words": 40}'})
        assert response.status_code == 202, response.text
        assert response.json()["counts"]["queued"] == 2
        results = client.get("/v1/summaries?limit=10").json()["data"]
    assert sorted(job["params"].items() for job in results) == sorted(
        [{"max_words": 40}.items(), {"max_words": 40, "max_sentences": 1}.items()]
    )
    assert count_rows(sqlite_url, Batch) == 1
    assert count_rows(sqlite_url, OutboxEntry) == 2


def test_once_loaded_the_same_gateway_answers_sync(settings: Settings) -> None:
    load = HeldLoad()
    with loading_gateway(settings, load) as client:
        assert client.post("/v1/summaries", json={"text": SHORT, "mode": "sync"}).status_code == 503
        load.release()
        wait_until(lambda: client.get("/readyz").status_code == 200)
        answered = client.post("/v1/summaries", json={"text": SHORT, "mode": "sync"})
        assert answered.status_code == 200, answered.text
        assert answered.json()["route"] == "sync"


def test_a_model_that_failed_to_load_still_lets_jobs_queue(settings: Settings, sqlite_url: str) -> None:
    load = HeldLoad(fail=True)
    with loading_gateway(settings, load) as client:
        load.release()
        wait_until(lambda: client.get("/readyz").json()["checks"]["model"] == "error")
        # The workers have models of their own; this replica's failure is no reason to refuse work.
        assert client.post("/v1/summaries", json={"text": SHORT, "mode": "async"}).status_code == 202
        refused = client.post("/v1/summaries", json={"text": SHORT, "mode": "sync"})
        assert_error(refused, 503, "temporarily_unavailable")
        assert int(refused.headers["retry-after"]) >= 1
    assert count_rows(sqlite_url, SummaryJob) == 1
