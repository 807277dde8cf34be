"""The result cache on SQLite and PostgreSQL: exact hits on both paths, scope, bypass and purge,
and the worker's reuse of cached and duplicate documents."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select

from gateway.auth import create_key
from schema.db import make_engine
from schema.models import (
    NotificationDelivery,
    OutboxEntry,
    ResultCacheEntry,
    jobs_table,
    result_cache_table,
    usage_table,
)
from schema.settings import CacheSettings
from summarizer import SummaryParams
from summarizer.testing import FakeSummarizer
from summarizer.types import ModelInfo
from tests.builders import job_values
from tests.fixtures.gateway import assert_error, make_settings, running_gateway
from tests.fixtures.near_duplicates import Pair, pairs
from workers.execution import JobExecutor
from workers.retry import RetryPolicy

SHORT = "Kafka carries ids. The database keeps the text. Workers pull batches and store results."
OTHER = "Relays publish the outbox. Notifiers sign webhooks. Retries are rows, not sleeps."
HOOK = {"url": "http://127.0.0.1:10/hook", "secret": "whsec_MTIzNDU2Nzg5MDEy"}
POLICY = RetryPolicy(max_claims=3, max_retries=2, base_delay_s=30.0, max_delay_s=60.0, jitter=False)
TOPICS = {"interactive": "jobs", "bulk": "jobs.bulk"}


class RetrainedSummarizer(FakeSummarizer):
    """The same engine with other weights: every cache key must change."""

    def __init__(self) -> None:
        super().__init__()
        self.info = ModelInfo(
            name="fake-extractive",
            sha256="1" * 64,
            backend="fake",
            quantization="none",
            kind="extractive",
            device="cpu",
        )


def gateway(
    url: str, summarizer: FakeSummarizer | None = None, **env: str
) -> AbstractContextManager[TestClient]:
    return running_gateway(make_settings(url, **env), summarizer)


def count(url: str, model: Any, *where: Any) -> int:
    engine = make_engine(make_settings(url).database)
    with engine.connect() as conn:
        found: int = conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    engine.dispose()
    return found


def test_a_repeated_text_is_answered_from_the_cache(db_url: str) -> None:
    with gateway(db_url) as client:
        first = client.post("/v1/summaries", json={"text": SHORT})
        assert first.status_code == 200, first.text
        assert first.json()["cached"] is False
        # Surrounding blanks and Windows line ends are normalized away.
        again = client.post("/v1/summaries", json={"text": f"  {SHORT}\r\n"})
        assert again.status_code == 200, again.text
        body = again.json()
        assert body["cached"] is True
        assert body["cache_hit_of"] == first.json()["id"]
        assert body["similarity"] == 1.0
        assert body["summary"] == first.json()["summary"]
        assert body["model"] == first.json()["model"]
        assert body["id"] != first.json()["id"]
        # Other parameters are another key.
        shorter = client.post("/v1/summaries", json={"text": SHORT, "params": {"max_words": 5}})
        assert shorter.json()["cached"] is False
    assert count(db_url, ResultCacheEntry) == 2
    assert count(db_url, ResultCacheEntry, result_cache_table.c.hits == 1) == 1


def test_an_async_hit_finishes_at_submit_without_kafka_and_still_notifies(db_url: str) -> None:
    with gateway(db_url) as client:
        client.post("/v1/summaries", json={"text": SHORT})
        response = client.post("/v1/summaries", json={"text": SHORT, "mode": "async", "webhook": HOOK})
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "succeeded"
        assert job["route"] == "async"
        assert job["cached"] is True
        assert response.headers["location"] == f"/v1/summaries/{job['id']}"
        polled = client.get(f"/v1/summaries/{job['id']}").json()
        assert polled["status"] == "succeeded" and polled["cache_hit_of"] == job["cache_hit_of"]
    assert count(db_url, OutboxEntry) == 0
    assert count(db_url, NotificationDelivery, NotificationDelivery.job_id == job["id"]) == 1
    assert count(db_url, usage_table, usage_table.c.job_id == job["id"], usage_table.c.cached.is_(True)) == 1


def test_tenants_do_not_share_entries_unless_the_cache_is_global(db_url: str) -> None:
    engine = make_engine(make_settings(db_url).database)
    acme = {"Authorization": f"Bearer {create_key(engine, 'acme').key}"}
    globex = {"Authorization": f"Bearer {create_key(engine, 'globex').key}"}
    engine.dispose()
    with gateway(db_url) as client:
        assert client.post("/v1/summaries", json={"text": SHORT}, headers=acme).json()["cached"] is False
        assert client.post("/v1/summaries", json={"text": SHORT}, headers=globex).json()["cached"] is False
        assert client.post("/v1/summaries", json={"text": SHORT}, headers=acme).json()["cached"] is True
    with gateway(db_url, CONDENSE_CACHE__SCOPE="global") as client:
        first = client.post("/v1/summaries", json={"text": OTHER}, headers=acme).json()
        shared = client.post("/v1/summaries", json={"text": OTHER}, headers=globex).json()
        assert shared["cached"] is True and shared["cache_hit_of"] == first["id"]


def test_a_model_change_misses(db_url: str) -> None:
    with gateway(db_url) as client:
        client.post("/v1/summaries", json={"text": SHORT})
        assert client.post("/v1/summaries", json={"text": SHORT}).json()["cached"] is True
    with gateway(db_url, RetrainedSummarizer()) as client:
        answer = client.post("/v1/summaries", json={"text": SHORT}).json()
        assert answer["cached"] is False
        assert answer["model"]["sha256"] == "1" * 64


def test_bypass_and_purge(db_url: str) -> None:
    with gateway(db_url) as client:
        first = client.post("/v1/summaries", json={"text": SHORT}).json()
        bypass = client.post("/v1/summaries", json={"text": SHORT, "params": {"cache": False}})
        assert bypass.status_code == 200, bypass.text
        assert bypass.json()["cached"] is False
        assert bypass.json()["params"]["cache"] is False
        assert_error(
            client.post("/v1/summaries", json={"text": SHORT, "params": {"cache": "no"}}),
            422,
            "invalid_params",
        )
        assert client.post("/v1/summaries", json={"text": SHORT}).json()["cache_hit_of"] == first["id"]
        purged = client.delete("/v1/cache")
        assert purged.status_code == 200
        assert purged.json() == {"deleted": 1}
        assert client.post("/v1/summaries", json={"text": SHORT}).json()["cached"] is False
    with gateway(db_url, CONDENSE_CACHE__ENABLED="false") as client:
        assert client.post("/v1/summaries", json={"text": SHORT}).json()["cached"] is False


def _queue(engine: Engine, text: str, **fields: Any) -> str:
    values = job_values(input_text=text, **fields)
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [values])
    return str(values["id"])


def _row(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).mappings().one())


class Recording(FakeSummarizer):
    def __init__(self) -> None:
        super().__init__()
        self.documents: list[str] = []

    def summarize_batch(self, docs: Any, params: SummaryParams | Any, **kwargs: Any) -> Any:
        self.documents += list(docs)
        return super().summarize_batch(docs, params, **kwargs)


def test_the_worker_runs_a_duplicate_once_and_later_answers_it_from_the_cache(engine: Engine) -> None:
    text = "Document one has a first sentence. And a second one that says more."
    fake = Recording()
    executor = JobExecutor(engine, fake, policy=POLICY, topic_for=TOPICS, cache_rules=CacheSettings())
    first, twin, other = _queue(engine, text), _queue(engine, text), _queue(engine, SHORT)
    outcome = executor.run([first, twin, other])
    assert sorted(outcome.succeeded) == sorted([first, twin, other])
    assert fake.documents == [text, SHORT]
    assert _row(engine, twin)["cache_hit_of"] == first
    assert _row(engine, twin)["summary"] == _row(engine, first)["summary"]
    later = _queue(engine, text, tenant="acme")
    executor.run([later])
    assert fake.documents == [text, SHORT]
    row = _row(engine, later)
    assert row["cached"] is True and row["cache_hit_of"] == first and row["status"] == "succeeded"
    bypass = _queue(engine, text, params={"cache": False})
    executor.run([bypass])
    assert fake.documents == [text, SHORT, text]
    assert _row(engine, bypass)["cached"] is False
    with engine.connect() as conn:
        entries = conn.execute(select(func.count()).select_from(result_cache_table)).scalar_one()
        cached_flags = conn.execute(select(usage_table.c.cached)).scalars().all()
    assert entries == 2
    assert sorted(cached_flags) == [False, False, False, True, True]


def _long_paragraph_pairs() -> dict[str, Pair]:
    found: dict[str, Pair] = {}
    for pair in pairs():
        if len(pair.original.split()) >= 60 and pair.kind not in found:
            found[pair.kind] = pair
    return found


def test_near_duplicates_reuse_only_when_asked_and_never_across_a_changed_number(db_url: str) -> None:
    by_kind = _long_paragraph_pairs()
    typo, number = by_kind["typo"], by_kind["number"]
    near = {"near_duplicates": True}
    with gateway(db_url) as client:
        source = client.post("/v1/summaries", json={"text": typo.original}).json()
        reused = client.post("/v1/summaries", json={"text": typo.variant, "params": near}).json()
        assert reused["cached"] is True
        assert reused["cache_hit_of"] == source["id"]
        assert 0.8 < reused["similarity"] <= 1.0
        assert reused["summary"] == source["summary"]
        assert reused["params"]["near_duplicates"] is True
        # Not asked for: the exact key alone, which differs.
        assert client.post("/v1/summaries", json={"text": typo.variant}).json()["cached"] is False
        assert client.post("/v1/summaries", json={"text": number.original}).json()["cached"] is False
        changed = client.post("/v1/summaries", json={"text": number.variant, "params": near}).json()
        assert changed["cached"] is False


def test_the_worker_reuses_a_near_duplicate_in_the_same_batch(engine: Engine) -> None:
    by_kind = _long_paragraph_pairs()
    typo, negation = by_kind["typo"], by_kind["negation"]
    fake = Recording()
    executor = JobExecutor(engine, fake, policy=POLICY, topic_for=TOPICS, cache_rules=CacheSettings())
    near = {"near_duplicates": True}
    ids = [
        _queue(engine, typo.original, params=near),
        _queue(engine, typo.variant, params=near),
        _queue(engine, negation.original, params=near),
        _queue(engine, negation.variant, params=near),
    ]
    executor.run(ids)
    assert fake.documents == [typo.original, negation.original, negation.variant]
    follower = _row(engine, ids[1])
    assert follower["cache_hit_of"] == ids[0] and follower["similarity"] < 1.0
    assert _row(engine, ids[3])["cached"] is False
