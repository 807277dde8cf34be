"""Model variants through the API: routing at submit, per-variant models, GET /v1/models, batches."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from gateway.app import create_app
from schema.db import make_engine
from schema.models import Batch, JobStatus, SummaryJob, jobs_table
from schema.settings import Settings
from schema.store import jobs
from schema.store.jobs import Outcome
from schema.variants import pick_by_weight, variant_specs
from summarizer import Summarizer, SummarizerSettings
from summarizer.errors import SummarizerConfigError
from summarizer.testing import FakeSummarizer
from tests.fixtures.gateway import assert_error, count_rows, make_settings

TEXT = "Variants serve side by side. " * 4 + "Each job records the one it ran on. Weights split the rest."
# default_max_words tells the factory which variant it is building.
WORDS = {"a": 7, "b": 40, "broken": 3}
ADAPTERS = {"legal": "ab" * 32}
# Every fake the factory built, by variant, so tests can see which documents each one ran.
BUILT: dict[str, FakeSummarizer] = {}


def variant_settings(url: str) -> Settings:
    env = {}
    for name, words in WORDS.items():
        env[f"CONDENSE_VARIANTS__{name.upper()}__WEIGHT"] = "0" if name == "broken" else "1"
        env[f"CONDENSE_VARIANTS__{name.upper()}__SUMMARIZER__DEFAULT_MAX_WORDS"] = str(words)
    return make_settings(url, **env)


def build(settings: SummarizerSettings) -> Summarizer:
    name = {words: name for name, words in WORDS.items()}[settings.default_max_words]
    if name == "broken":
        raise SummarizerConfigError("summarizer.model: the weights are gone")
    fake = FakeSummarizer(
        default_max_words=settings.default_max_words, adapters=ADAPTERS if name == "b" else None
    )
    fake.info = replace(fake.info, name=f"fake-{name}", sha256=name[0] * 64)
    BUILT[name] = fake
    return fake


@pytest.fixture
def variant_client(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(variant_settings(sqlite_url), summarizer_factory=build)) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway never became ready"
            time.sleep(0.02)
        yield client


def stored_variants(url: str) -> dict[str, str | None]:
    engine = make_engine(make_settings(url).database)
    with engine.connect() as conn:
        rows = conn.execute(select(jobs_table.c.id, jobs_table.c.variant)).all()
    engine.dispose()
    return {row.id: row.variant for row in rows}


def test_params_model_picks_the_variant_on_the_sync_and_the_async_path(
    variant_client: TestClient, sqlite_url: str
) -> None:
    latency = {"variant": "a", "route": "sync", "status": "succeeded"}
    before = REGISTRY.get_sample_value("condense_job_latency_seconds_count", latency) or 0
    words_before = REGISTRY.get_sample_value("condense_summary_words_sum", {"variant": "a"}) or 0
    sync = variant_client.post("/v1/summaries", json={"text": TEXT, "mode": "sync", "params": {"model": "a"}})
    assert sync.status_code == 200, sync.text
    assert REGISTRY.get_sample_value("condense_job_latency_seconds_count", latency) == before + 1
    assert (
        REGISTRY.get_sample_value("condense_summary_words_sum", {"variant": "a"}) == words_before + WORDS["a"]
    )
    assert (
        REGISTRY.get_sample_value("condense_engine_tokens_per_second_count", {"variant": "a", "path": "sync"})
        or 0
    ) >= 1
    answer = sync.json()
    assert answer["variant"] == "a"
    assert answer["model"]["name"] == "fake-a"
    assert len(answer["summary"].split()) == WORDS["a"]
    # The engine never sees "model": the stored params are the variant's own.
    assert answer["params"] == {"max_words": WORDS["a"]}

    queued = variant_client.post(
        "/v1/summaries", json={"text": TEXT, "mode": "async", "params": {"model": "b", "max_words": 12}}
    )
    assert queued.status_code == 202, queued.text
    job = variant_client.get(f"/v1/summaries/{queued.json()['id']}").json()
    assert job["variant"] == "b"
    assert job["params"] == {"max_words": 12}
    assert stored_variants(sqlite_url) == {answer["id"]: "a", job["id"]: "b"}


def test_an_unknown_model_is_a_422_naming_the_known_ones_and_stores_nothing(
    variant_client: TestClient, sqlite_url: str
) -> None:
    body = assert_error(
        variant_client.post("/v1/summaries", json={"text": TEXT, "params": {"model": "gpt-9"}}),
        422,
        "unknown_model",
    )
    assert "'gpt-9'" in body["error"]["message"] and "a, b, broken" in body["error"]["message"]
    assert_error(
        variant_client.post("/v1/summaries", json={"text": TEXT, "params": {"model": 7}}),
        422,
        "invalid_params",
    )
    upload = variant_client.post(
        "/v1/batches",
        files=[("files", ("one.txt", TEXT.encode())), ("files", ("two.txt", TEXT.encode()))],
        data={"params": json.dumps({"model": "gpt-9"})},
    )
    assert "one.txt" in assert_error(upload, 422, "unknown_model")["error"]["message"]
    assert count_rows(sqlite_url, SummaryJob) == 0
    assert count_rows(sqlite_url, Batch) == 0


def test_without_a_model_jobs_are_routed_by_weight_from_their_id(
    variant_client: TestClient, sqlite_url: str
) -> None:
    ids = [
        variant_client.post("/v1/summaries", json={"text": TEXT, "mode": "async"}).json()["id"]
        for _ in range(16)
    ]
    specs = variant_specs(variant_settings(sqlite_url))
    stored = stored_variants(sqlite_url)
    assert stored == {job_id: pick_by_weight(job_id, specs) for job_id in ids}
    # "broken" has weight 0: reachable only by name.
    assert set(stored.values()) == {"a", "b"}


def test_a_variant_that_failed_to_load_answers_503_and_the_others_still_serve(
    variant_client: TestClient,
) -> None:
    failed = variant_client.post(
        "/v1/summaries", json={"text": TEXT, "mode": "sync", "params": {"model": "broken"}}
    )
    assert_error(failed, 503, "temporarily_unavailable")
    assert "'broken'" in failed.json()["error"]["message"]
    assert failed.headers["retry-after"]
    # Queued work needs no model here: a worker's will run it.
    queued = variant_client.post("/v1/summaries", json={"text": TEXT, "params": {"model": "broken"}})
    assert queued.status_code == 202 and queued.json()["variant"] == "broken"
    served = variant_client.post(
        "/v1/summaries", json={"text": TEXT, "mode": "sync", "params": {"model": "b"}}
    )
    assert served.status_code == 200 and served.json()["model"]["name"] == "fake-b"
    health = variant_client.get("/healthz").json()["components"]
    assert health["model"] == "partial"
    assert health["variants"] == {"a": "ready", "b": "ready", "broken": "error"}
    assert "the weights are gone" in health["model_error"]["broken"]


def test_get_models_lists_each_variant_with_its_weight_model_and_adapters(variant_client: TestClient) -> None:
    response = variant_client.get("/v1/models")
    assert response.status_code == 200, response.text
    listed = {variant["name"]: variant for variant in response.json()["data"]}
    assert list(listed) == ["a", "b", "broken"]
    a, b, broken = listed["a"], listed["b"], listed["broken"]
    assert (a["weight"], a["share"], a["status"], a["loaded"]) == (1.0, 0.5, "ready", True)
    assert (a["model"], a["sha256"], a["kind"], a["backend"]) == ("fake-a", "a" * 64, "extractive", "fake")
    assert a["engine_version"].endswith("/fake/none") and a["quantization"] == "none"
    assert a["adapters"] == {}
    assert b["adapters"] == ADAPTERS
    # Not loaded: what the settings alone tell.
    assert (broken["loaded"], broken["status"], broken["share"]) == (False, "error", 0.0)
    assert (broken["model"], broken["kind"], broken["backend"], broken["sha256"]) == (
        "sentence-transformers/all-MiniLM-L6-v2",
        "extractive",
        "auto",
        None,
    )
    assert "the weights are gone" in broken["error"]


def test_a_batch_model_applies_to_each_document_unless_a_line_names_its_own(
    variant_client: TestClient, sqlite_url: str
) -> None:
    lines = [
        {"custom_id": "plain", "text": TEXT},
        {"custom_id": "own", "text": TEXT, "params": {"model": "a"}},
    ]
    upload = variant_client.post(
        "/v1/batches",
        files=[("files", ("docs.jsonl", "\n".join(json.dumps(line) for line in lines).encode()))],
        data={"params": json.dumps({"model": "b"})},
    )
    assert upload.status_code == 202, upload.text
    batch_id = upload.json()["id"]
    routed = variant_client.post("/v1/batches", files=[("files", ("x.txt", TEXT.encode()))])
    assert routed.status_code == 202, routed.text

    engine = make_engine(make_settings(sqlite_url).database)
    with engine.begin() as conn:
        rows = conn.execute(select(jobs_table)).mappings().all()
        by_custom_id = {row["custom_id"]: row for row in rows}
        assert by_custom_id["plain"]["variant"] == "b" and by_custom_id["own"]["variant"] == "a"
        assert by_custom_id["plain"]["params"] == {"max_words": WORDS["b"]}
        lone = by_custom_id["x.txt"]
        specs = variant_specs(variant_settings(sqlite_url))
        assert lone["variant"] == pick_by_weight(lone["id"], specs)
        for row in rows:
            jobs.claim(conn, [row["id"]], max_claims=3)
            jobs.finish(conn, row["id"], Outcome(JobStatus.SUCCEEDED, summary="done"))
    engine.dispose()
    results = [
        json.loads(line) for line in variant_client.get(f"/v1/batches/{batch_id}/results").text.splitlines()
    ]
    assert {(result["custom_id"], result["variant"]) for result in results} == {("plain", "b"), ("own", "a")}


def test_the_sync_micro_batcher_batches_each_variant_on_its_own_model(variant_client: TestClient) -> None:
    def ask(index: int) -> tuple[str, dict[str, object]]:
        name = "ab"[index % 2]
        text = f"Request {index} for variant {name}. " + TEXT
        response = variant_client.post(
            "/v1/summaries", json={"text": text, "mode": "sync", "params": {"model": name}}
        )
        assert response.status_code == 200, response.text
        return name, response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(16)))
    for name, answer in answers:
        assert (answer["variant"], answer["model"]["name"]) == (name, f"fake-{name}")
    for name in ("a", "b"):
        # The warm-up call aside, every batch a model ran held only its own variant's requests.
        asked = [doc for call in BUILT[name].calls[1:] for doc in call]
        assert len(asked) == 8
        assert all(f"for variant {name}." in doc for doc in asked)


def test_models_list_a_loading_variant_from_its_settings(sqlite_url: str) -> None:
    release = threading.Event()

    def held(settings: SummarizerSettings) -> Summarizer:
        release.wait(timeout=30)
        return build(settings)

    try:
        with TestClient(create_app(variant_settings(sqlite_url), summarizer_factory=held)) as client:
            listed = client.get("/v1/models").json()["data"]
            assert [(v["name"], v["status"], v["loaded"]) for v in listed] == [
                ("a", "loading", False),
                ("b", "loading", False),
                ("broken", "loading", False),
            ]
            assert {(v["kind"], v["backend"], v["sha256"]) for v in listed} == {("extractive", "auto", None)}
            assert client.get("/readyz").status_code == 503
            release.set()
    finally:
        release.set()
