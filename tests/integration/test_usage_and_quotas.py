"""Usage accounting and tenants' quotas on SQLite and PostgreSQL, with two gateway instances
sharing one database where a limit must hold across replicas."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from condense.cli import main as cli
from gateway.auth import create_key
from schema.db import make_engine
from schema.models import batches_table, jobs_table
from schema.settings import CacheSettings, DatabaseSettings
from schema.store import quotas
from summarizer.testing import FakeSummarizer
from tests.builders import job_values
from tests.fixtures.gateway import assert_error
from tests.integration.test_result_cache import POLICY, SHORT, TOPICS, gateway
from workers.execution import JobExecutor

LONG = " ".join(f"Sentence number {i} talks about queues, batches and summaries." for i in range(400))


def _engine(url: str) -> Engine:
    return make_engine(DatabaseSettings(url=url))


def test_take_refills_with_time_and_refuses_when_empty(engine: Engine) -> None:
    with engine.begin() as conn:
        first = quotas.take(conn, "acme", rps=1.0, burst=2, now_s=1_000.0)
        second = quotas.take(conn, "acme", rps=1.0, burst=2, now_s=1_000.0)
        third = quotas.take(conn, "acme", rps=1.0, burst=2, now_s=1_000.25)
        later = quotas.take(conn, "acme", rps=1.0, burst=2, now_s=1_001.0)
        # A replica whose clock lags refills nothing instead of draining the bucket.
        lagging = quotas.take(conn, "acme", rps=1.0, burst=2, now_s=990.0)
        other = quotas.take(conn, "globex", rps=1.0, burst=2, now_s=1_000.0)
    assert (first.allowed, first.remaining) == (True, 1.0)
    assert (second.allowed, second.remaining) == (True, 0.0)
    assert not third.allowed
    assert third.retry_after_s == pytest.approx(0.75)
    assert later.allowed
    assert not lagging.allowed
    assert other.allowed


def test_two_gateways_share_the_rate_limit(db_url: str) -> None:
    engine = _engine(db_url)
    key = {"Authorization": f"Bearer {create_key(engine, 'acme').key}"}
    with engine.begin() as conn:
        # So slow a refill that the test's own duration adds nothing.
        quotas.set_limits(conn, "acme", rps=0.001, burst=3)
    engine.dispose()
    with gateway(db_url) as one, gateway(db_url) as two:
        answers = [
            one.post("/v1/summaries", json={"text": SHORT}, headers=key),
            two.post("/v1/summaries", json={"text": SHORT}, headers=key),
            one.post("/v1/summaries", json={"text": SHORT}, headers=key),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        refused = two.post("/v1/summaries", json={"text": SHORT}, headers=key)
        assert_error(refused, 429, "rate_limited")
        assert refused.headers["RateLimit-Limit"] == "3"
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
        assert_error(one.post("/v1/summaries", json={"text": SHORT}, headers=key), 429, "rate_limited")


def test_queued_quota_refuses_a_batch_whole_and_running_and_token_quotas_hold(db_url: str) -> None:
    engine = _engine(db_url)
    with engine.begin() as conn:
        quotas.set_limits(conn, "default", max_queued=3)
    with gateway(db_url) as client:
        for _ in range(2):
            assert client.post("/v1/summaries", json={"text": LONG}).status_code == 202
        files = [
            ("files", (f"{i}.txt", f"Document {i} says something. Then more.".encode())) for i in range(2)
        ]
        assert_error(client.post("/v1/batches", files=files), 429, "rate_limited")
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(batches_table)).scalar_one() == 0
        assert client.post("/v1/batches", files=files[:1]).status_code == 202
        assert_error(client.post("/v1/summaries", json={"text": LONG}), 429, "rate_limited")
        # A short text answered at once queues nothing.
        assert client.post("/v1/summaries", json={"text": SHORT}).status_code == 200
    with engine.begin() as conn:
        quotas.clear_limits(conn, "default")
        quotas.set_limits(conn, "default", max_running=1, tokens_per_day=None)
        conn.execute(insert(jobs_table), [job_values(tenant="default", status="running")])
    with gateway(db_url) as client:
        assert_error(client.post("/v1/summaries", json={"text": SHORT}), 429, "rate_limited")
    with engine.begin() as conn:
        quotas.set_limits(conn, "default", max_running=None, tokens_per_day=1)
    with gateway(db_url) as client:
        # Tokens already ran today (the short texts above), so the day's quota is spent.
        refused = client.post("/v1/summaries", json={"text": OTHER_TEXT})
        assert_error(refused, 429, "rate_limited")
        assert "tokens" in refused.json()["error"]["message"]
    engine.dispose()


OTHER_TEXT = "Quotas are rows. Buckets are rows too. Replicas agree through the database."


def test_usage_is_recorded_reported_and_carried_by_batch_results(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with gateway(db_url) as client:
        fresh = client.post("/v1/summaries", json={"text": SHORT}).json()
        client.post("/v1/summaries", json={"text": SHORT})
        batch = client.post(
            "/v1/batches",
            files=[("files", ("a.txt", SHORT.encode())), ("files", ("b.txt", OTHER_TEXT.encode()))],
        ).json()
        engine = _engine(db_url)
        with engine.connect() as conn:
            ids = list(
                conn.execute(select(jobs_table.c.id).where(jobs_table.c.batch_id == batch["id"])).scalars()
            )
        JobExecutor(
            engine, FakeSummarizer(), policy=POLICY, topic_for=TOPICS, cache_rules=CacheSettings()
        ).run(ids)
        engine.dispose()
        report = client.get("/v1/usage").json()
        totals = report["totals"]
        assert totals["jobs"] == 4
        assert totals["cached_jobs"] == 2
        assert totals["input_tokens"] > 0 and totals["output_units"] > 0 and totals["chunks"] == 4
        by_model = client.get("/v1/usage", params={"group_by": "model"}).json()["groups"]
        assert [group["model"] for group in by_model] == ["fake-extractive"]
        by_day = client.get("/v1/usage", params={"group_by": "day", "from": "2000-01-01"}).json()["groups"]
        assert len(by_day) == 1 and by_day[0]["jobs"] == 4
        assert client.get("/v1/usage", params={"to": "2000-01-01"}).json()["totals"]["jobs"] == 0
        assert_error(client.get("/v1/usage", params={"group_by": "week"}), 422, "invalid_request")
        lines = [
            json.loads(line) for line in client.get(f"/v1/batches/{batch['id']}/results").text.splitlines()
        ]
        by_name: dict[str, Any] = {line["custom_id"]: line for line in lines}
        assert by_name["a.txt"]["usage"]["cached"] is True
        assert by_name["a.txt"]["usage"]["cache_hit_of"] == fresh["id"]
        assert by_name["b.txt"]["usage"]["cached"] is False
        assert by_name["b.txt"]["usage"]["output_units"] > 0
    monkeypatch.setenv("CONDENSE_DATABASE__URL", db_url)
    assert cli(["usage", "--tenant", "default", "--json", "--group-by", "model"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["totals"] == totals
    assert cli(["tenants", "limits", "set", "acme", "--rps", "5", "--burst", "10"]) == 0
    assert cli(["tenants", "limits", "set", "acme", "--max-queued", "100", "--rps", "none"]) == 0
    assert cli(["tenants", "limits", "show", "acme"]) == 0
    shown = capsys.readouterr().out.splitlines()[-1]
    assert shown == "acme: rps=- burst=10 max_running=- max_queued=100 tokens_per_day=-"
    assert cli(["tenants", "limits", "clear", "acme"]) == 0
    assert cli(["tenants", "limits", "show"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no limits set"


def test_replicas_taking_allotments_never_pass_the_bucket_together(db_url: str) -> None:
    from gateway.errors import RateLimitedError
    from gateway.ratelimit import QuotaGuard
    from schema.db import make_async_engine

    engine = _engine(db_url)
    with engine.begin() as conn:
        # 100 requests a second: each replica takes 5 tokens per round trip; the frozen clocks
        # refill nothing, so exactly the 40 of the burst may pass, whichever replica admits them.
        quotas.set_limits(conn, "acme", rps=100, burst=40)
    engine.dispose()

    async def drain() -> tuple[int, int]:
        shared = make_async_engine(DatabaseSettings(url=db_url))
        replicas = [QuotaGuard(shared, clock=lambda: 5_000.0, monotonic=lambda: 7.0) for _ in range(2)]
        admitted = refused = 0
        for turn in range(120):
            try:
                await replicas[turn % 2].admit("acme")
                admitted += 1
            except RateLimitedError as exc:
                refused += 1
                assert exc.headers["RateLimit-Limit"] == "40"
        await shared.dispose()
        return admitted, refused

    admitted, refused = asyncio.run(drain())
    assert admitted == 40
    assert refused == 80
