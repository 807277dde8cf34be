"""The result cache's Redis front on the real Redis: hits after a database hit, tenant isolation,
the size bound, both TTLs, purge, and a Redis that is away (the database answers)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, delete, insert, select

from condense.stack import free_port
from gateway.auth import create_key
from schema.db import make_engine
from schema.models import jobs_table, result_cache_table
from schema.settings import DatabaseSettings
from schema.store import cache
from schema.store.cache import CacheEntry
from schema.store.cache_front import RedisCacheFront
from schema.store.errors import CacheFrontUnavailableError
from summarizer.testing import FakeSummarizer
from tests.builders import job_values
from tests.fixtures.gateway import assert_error, make_settings, running_gateway
from tests.fixtures.redis_server import RedisFront
from workers.execution import JobExecutor
from workers.retry import RetryPolicy

SHORT = "Kafka carries ids. The database keeps the text. Workers pull batches and store results."
MODEL = {"name": "fake-extractive", "sha256": "0" * 64}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_claims=3, max_retries=2, base_delay_s=30.0, max_delay_s=60.0, jitter=False)
TOPICS = {"interactive": "jobs", "bulk": "jobs.bulk"}


def entry(
    text: str, *, tenant: str = "acme", scope: str | None = None, created_at: datetime = T0
) -> CacheEntry:
    made = cache.new_entry(
        tenant=tenant,
        scope=scope or tenant,
        text=text,
        params={},
        model=MODEL,
        job_id=f"job-{text}",
        summary=f"summary of {text}",
        language="en",
        input_tokens=3,
        output_units=3,
        chunks=1,
        fingerprint=7,
    )
    return made.__class__(**{**made.as_row(), "created_at": created_at})


def errors(operation: str) -> float:
    return REGISTRY.get_sample_value("condense_cache_redis_errors_total", {"operation": operation}) or 0.0


# -- the front alone --------------------------------------------------------------------------------


def test_scopes_keep_tenants_apart_in_redis(redis_front: RedisFront) -> None:
    front = RedisCacheFront.from_settings(redis_front.rules())
    acme = entry("one")
    front.put([acme], now=T0)
    assert front.get_many([("acme", acme.key)], now=T0) == {acme.key: acme}
    # The same key asked for from another scope is another name: nothing to find.
    assert front.get_many([("globex", acme.key)], now=T0) == {}
    assert redis_front.entry_names() == [f"{redis_front.prefix}:e:acme:{acme.key}"]
    front.close()


def test_the_size_bound_evicts_the_least_recently_used(redis_front: RedisFront) -> None:
    front = RedisCacheFront.from_settings(redis_front.rules(redis_max_entries=5))
    made = [entry(f"text {i}") for i in range(8)]
    for i, item in enumerate(made[:5]):
        front.put([item], now=T0 + timedelta(seconds=i))
    # Used again, so the oldest write is not the first to go.
    assert made[0].key in front.get_many([("acme", made[0].key)], now=T0 + timedelta(seconds=5))
    for i, item in enumerate(made[5:]):
        front.put([item], now=T0 + timedelta(seconds=6 + i))
    kept = {made[i].key for i in (0, 4, 5, 6, 7)}
    later = T0 + timedelta(seconds=10)
    assert set(front.get_many([("acme", item.key) for item in made], now=later)) == kept
    client = redis_front.client
    assert len(redis_front.entry_names()) == 5
    assert client.zcard(f"{redis_front.prefix}:lru") == 5
    assert client.hlen(f"{redis_front.prefix}:owners") == 5
    assert client.scard(f"{redis_front.prefix}:t:acme") == 5
    front.close()


def test_entries_expire_by_both_ttls(redis_front: RedisFront) -> None:
    front = RedisCacheFront.from_settings(redis_front.rules(ttl_s=3_600, redis_ttl_s=600))
    fresh, older, stale = (
        entry("fresh"),
        entry("older", created_at=T0 - timedelta(minutes=55)),
        entry("stale", created_at=T0 - timedelta(hours=2)),
    )
    front.put([fresh, older, stale], now=T0)
    pttl = redis_front.client.pttl
    # redis_ttl_s bounds a fresh copy; ttl_s ends the older one's life first; the stale one is not put.
    assert 590_000 < pttl(front.name("acme", fresh.key)) <= 600_000
    assert 290_000 < pttl(front.name("acme", older.key)) <= 300_000
    assert pttl(front.name("acme", stale.key)) == -2
    keys = [("acme", fresh.key), ("acme", older.key)]
    assert set(front.get_many(keys, now=T0)) == {fresh.key, older.key}
    # Whatever Redis still holds, an entry older than ttl_s is not served.
    assert set(front.get_many(keys, now=T0 + timedelta(minutes=6))) == {fresh.key}
    front.close()


def test_a_purge_removes_only_the_tenants_copies(redis_front: RedisFront) -> None:
    front = RedisCacheFront.from_settings(redis_front.rules(scope="global"))
    ours = [entry(f"ours {i}", tenant="acme", scope="*") for i in range(3)]
    theirs = entry("theirs", tenant="globex", scope="*")
    front.put([*ours, theirs], now=T0)
    assert front.purge("acme") == 3
    assert front.get_many([("*", item.key) for item in [*ours, theirs]], now=T0) == {theirs.key: theirs}
    assert redis_front.entry_names() == [front.name("*", theirs.key)]
    assert redis_front.client.zcard(f"{redis_front.prefix}:lru") == 1
    assert not redis_front.client.exists(f"{redis_front.prefix}:t:acme")
    assert front.purge("acme") == 0
    front.close()


def test_a_redis_that_is_away_costs_a_fallback_not_an_error(redis_front: RedisFront) -> None:
    clock = [0.0]
    rules = redis_front.rules(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    front = RedisCacheFront.from_settings(rules)
    front = RedisCacheFront(front.client, rules, monotonic=lambda: clock[0])
    before = errors("get")
    item = entry("one")
    assert front.get_many([("acme", item.key)]) == {}
    assert errors("get") == before + 1
    # Left alone for a while: no timeout per request during an outage.
    front.put([item])
    assert front.get_many([("acme", item.key)]) == {}
    assert errors("get") == before + 1
    clock[0] += 10
    assert front.get_many([("acme", item.key)]) == {}
    assert errors("get") == before + 2
    # A purge always tries, and says when it could not reach Redis.
    with pytest.raises(CacheFrontUnavailableError):
        front.purge("acme")
    front.close()


# -- the gateway ------------------------------------------------------------------------------------


def gateway(url: str, **env: str) -> AbstractContextManager[TestClient]:
    return running_gateway(make_settings(url, **env))


def forget_database_entries(url: str) -> None:
    """Delete the rows, so that only Redis can answer."""
    engine = make_engine(DatabaseSettings(url=url))
    with engine.begin() as conn:
        conn.execute(delete(result_cache_table))
    engine.dispose()


def test_the_gateway_serves_from_redis_after_a_database_hit(pg_url: str, redis_front: RedisFront) -> None:
    engine = make_engine(DatabaseSettings(url=pg_url))
    acme = {"Authorization": f"Bearer {create_key(engine, 'acme').key}"}
    globex = {"Authorization": f"Bearer {create_key(engine, 'globex').key}"}
    engine.dispose()
    with gateway(pg_url) as client:
        first = client.post("/v1/summaries", json={"text": SHORT}, headers=acme).json()
    assert redis_front.entry_names() == []
    with gateway(pg_url, **redis_front.env()) as client:
        from_database = client.post("/v1/summaries", json={"text": SHORT}, headers=acme).json()
        assert from_database["cached"] is True and from_database["cache_hit_of"] == first["id"]
        # The database's hit was copied to Redis, in the tenant's namespace.
        [name] = redis_front.entry_names()
        assert name.startswith(f"{redis_front.prefix}:e:acme:")
        forget_database_entries(pg_url)
        from_redis = client.post("/v1/summaries", json={"text": SHORT}, headers=acme).json()
        assert from_redis["cached"] is True and from_redis["cache_hit_of"] == first["id"]
        assert from_redis["summary"] == first["summary"]
        # Another tenant never reaches acme's copy.
        assert client.post("/v1/summaries", json={"text": SHORT}, headers=globex).json()["cached"] is False


def test_new_results_go_to_redis_and_a_purge_takes_them_out(pg_url: str, redis_front: RedisFront) -> None:
    with gateway(pg_url, **redis_front.env()) as client:
        first = client.post("/v1/summaries", json={"text": SHORT}).json()
        assert first["cached"] is False
        [name] = redis_front.entry_names()
        assert name.startswith(f"{redis_front.prefix}:e:default:")
        assert client.delete("/v1/cache").json() == {"deleted": 1}
        assert redis_front.entry_names() == []
        assert client.post("/v1/summaries", json={"text": SHORT}).json()["cached"] is False


def test_with_redis_away_submits_are_answered_from_the_database(pg_url: str, redis_front: RedisFront) -> None:
    before = errors("get")
    closed = redis_front.env(CONDENSE_CACHE__REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with gateway(pg_url, **closed) as client:
        first = client.post("/v1/summaries", json={"text": SHORT})
        assert first.status_code == 200, first.text
        assert first.json()["cached"] is False
        again = client.post("/v1/summaries", json={"text": SHORT, "mode": "async"})
        assert again.status_code == 202, again.text
        assert again.json()["cached"] is True and again.json()["cache_hit_of"] == first.json()["id"]
        assert errors("get") > before
        # The rows are gone, yet copies might not be: the purge says so instead of claiming success.
        refused = assert_error(client.delete("/v1/cache"), 503, "temporarily_unavailable")
        assert "retry" in refused["error"]["message"]


# -- the worker -------------------------------------------------------------------------------------


def _queue(engine: Engine, text: str) -> str:
    values: dict[str, Any] = job_values(input_text=text)
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [values])
    return str(values["id"])


class Recording(FakeSummarizer):
    def __init__(self) -> None:
        super().__init__()
        self.documents: list[str] = []

    def summarize_batch(self, docs: Any, params: Any, **kwargs: Any) -> Any:
        self.documents += list(docs)
        return super().summarize_batch(docs, params, **kwargs)


def test_the_worker_reads_and_fills_the_front(pg_url: str, redis_front: RedisFront) -> None:
    engine = make_engine(DatabaseSettings(url=pg_url))
    rules = redis_front.rules()
    fake = Recording()
    plain = JobExecutor(engine, fake, policy=POLICY, topic_for=TOPICS, cache_rules=rules)
    front = RedisCacheFront.from_settings(rules)
    fronted = JobExecutor(engine, fake, policy=POLICY, topic_for=TOPICS, cache_rules=rules, cache_front=front)
    first = _queue(engine, SHORT)
    plain.run([first])
    assert redis_front.entry_names() == []
    # A database hit is copied to Redis ...
    fronted.run([_queue(engine, SHORT)])
    assert len(redis_front.entry_names()) == 1
    forget_database_entries(pg_url)
    # ... and answers the next one alone.
    later = _queue(engine, SHORT)
    fronted.run([later])
    assert fake.documents == [SHORT]
    with engine.connect() as conn:
        row = conn.execute(select(jobs_table).where(jobs_table.c.id == later)).mappings().one()
    assert row["cached"] is True and row["cache_hit_of"] == first
    # A new summary goes to the database, then to Redis.
    fronted.run([_queue(engine, "Another text. With two sentences.")])
    assert len(redis_front.entry_names()) == 2
    with engine.begin() as conn:
        [kept] = conn.execute(select(result_cache_table)).mappings().all()
        # A key already there keeps its first entry, and only what the database stored is copied.
        assert cache.put(conn, [CacheEntry.from_row({**kept, "job_id": "another-job"})]) == []
    front.close()
    engine.dispose()
