"""Concurrent exact cache lookups of the gateway share queries and answer each submit as alone."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.cache_lookups import CacheLookups
from schema.db import make_async_engine, make_engine
from schema.models import ResultCacheEntry, utcnow
from schema.store import cache
from tests.fixtures.gateway import make_settings

MODEL = {"name": "tiny", "sha256": "0" * 64}


def _entry(number: int) -> cache.CacheEntry:
    return cache.new_entry(
        tenant="acme",
        scope="acme",
        text=f"document {number}",
        params={"max_words": 50},
        model=MODEL,
        job_id=f"job-{number}",
        summary=f"summary {number}",
        language="en",
        input_tokens=10,
        output_units=2,
        chunks=1,
    )


def _key(number: int) -> str:
    return cache.cache_key(scope="acme", text=f"document {number}", params={"max_words": 50}, model=MODEL)


def test_many_lookups_at_once_share_queries_and_each_gets_its_own_answer(db_url: str) -> None:
    settings = make_settings(db_url)
    sync = make_engine(settings.database)
    with sync.begin() as conn:
        cache.put(conn, [_entry(n) for n in range(0, 60, 2)])  # even numbers are cached
    sync.dispose()

    async def run() -> tuple[list[cache.CacheEntry | None], int]:
        engine = make_async_engine(settings.database)
        try:
            lookups = CacheLookups(engine, ttl_s=0)
            # The same key asked twice at once is answered twice.
            found = await asyncio.gather(*(lookups.get(_key(n % 60)) for n in range(120)))
            return list(found), lookups.queries
        finally:
            await engine.dispose()

    found, queries = asyncio.run(run())
    for number, entry in enumerate(found):
        if number % 2 == 0:
            assert entry is not None and entry.summary == f"summary {number % 60}", number
        else:
            assert entry is None, number
    # 120 submits, a handful of round trips: two run at once, the rest gather behind them.
    assert 1 <= queries <= 4, queries


def test_a_failed_query_fails_every_lookup_that_waited_on_it() -> None:
    async def run() -> list[BaseException | cache.CacheEntry | None]:
        # Nothing listens on this port: every query fails to connect.
        engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none", pool_pre_ping=False)
        try:
            lookups = CacheLookups(engine, ttl_s=0)
            return await asyncio.gather(*(lookups.get(_key(n)) for n in range(10)), return_exceptions=True)
        finally:
            await engine.dispose()

    outcomes = asyncio.run(run())
    assert len(outcomes) == 10
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes


@pytest.mark.parametrize(("ttl_s", "served"), [(0.0, True), (3600.0, False)])
def test_lookups_keep_the_cache_ttl(db_url: str, ttl_s: float, served: bool) -> None:
    settings = make_settings(db_url)
    sync = make_engine(settings.database)
    with sync.begin() as conn:
        cache.put(conn, [_entry(1)])
        # Written two hours ago: too old for a one-hour TTL, still served without one.
        conn.execute(update(ResultCacheEntry).values(created_at=utcnow() - timedelta(hours=2)))
    sync.dispose()

    async def run() -> cache.CacheEntry | None:
        engine = make_async_engine(settings.database)
        try:
            return await CacheLookups(engine, ttl_s=ttl_s).get(_key(1))
        finally:
            await engine.dispose()

    assert (asyncio.run(run()) is not None) is served
