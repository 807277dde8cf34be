"""Group commit on a real database: many submits share transactions, a bad row fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gateway.errors import UnavailableError
from gateway.submit import GroupCommitter
from schema.db import is_sqlite, make_async_engine
from schema.models import jobs_table, new_id, outbox_table
from schema.settings import DatabaseSettings
from schema.store.jobs import new_job
from schema.store.records import JobRecord

TOPICS = {"interactive": "jobs", "bulk": "jobs.bulk"}


def job_row(job_id: str | None = None, **columns: Any) -> JobRecord:
    return new_job(tenant="acme", text=columns.pop("text", "text"), id=job_id or new_id(), **columns)


def committer_for(engine: Any, *, window_ms: float, max_rows: int) -> GroupCommitter:
    return GroupCommitter(engine, topic_for=TOPICS, window_ms=window_ms, max_rows=max_rows)


async def count(engine: Any, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_concurrent_submits_share_transactions(db_url: str) -> None:
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = committer_for(engine, window_ms=5, max_rows=64)
    await asyncio.gather(*(committer.insert(job_row()) for _ in range(300)))
    assert committer.rows == 300
    assert committer.commits < 300 / 4, f"{committer.commits} commits for 300 rows: no grouping happened"
    assert await count(engine, outbox_table) == 300
    await committer.close()
    await engine.dispose()


async def test_a_lone_submit_commits_without_waiting_for_the_window(db_url: str) -> None:
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = committer_for(engine, window_ms=10_000, max_rows=64)
    await asyncio.wait_for(committer.insert(job_row(status="succeeded")), timeout=5)
    assert committer.commits == 1
    await committer.close()
    await engine.dispose()


async def test_a_conflicting_row_fails_alone(db_url: str) -> None:
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = committer_for(engine, window_ms=50, max_rows=64)
    taken = new_id()
    await committer.insert(job_row(taken))
    # Keep a commit in flight so the next submits gather into one group with the duplicate.
    results = await asyncio.gather(
        committer.insert(job_row()),
        committer.insert(job_row(taken)),
        committer.insert(job_row()),
        return_exceptions=True,
    )
    # No cache entry came with them, so none was stored.
    assert results[0] is False and results[2] is False
    assert isinstance(results[1], IntegrityError)
    assert await count(engine, outbox_table) == 3
    await committer.close()
    await engine.dispose()


async def test_a_row_the_database_cannot_store_fails_alone(db_url: str) -> None:
    # The API refuses NUL before it gets here; this is the committer's own line of defence.
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = committer_for(engine, window_ms=50, max_rows=64)
    await committer.insert(job_row())
    results = await asyncio.gather(
        *(committer.insert(job_row(text="bad\x00text" if i == 3 else f"fine {i}")) for i in range(8)),
        return_exceptions=True,
    )
    failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == ([] if is_sqlite(db_url) else [3])
    assert await count(engine, jobs_table) == (9 if is_sqlite(db_url) else 8)
    await committer.close()
    await engine.dispose()


async def test_an_unreachable_database_is_a_retryable_error() -> None:
    engine = make_async_engine(DatabaseSettings(url="postgresql://nobody@127.0.0.1:1/nothing"))
    committer = committer_for(engine, window_ms=1, max_rows=8)
    with pytest.raises(UnavailableError):
        await committer.insert(job_row())
    await committer.close()
    await engine.dispose()
