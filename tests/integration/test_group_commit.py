"""Group commit on a real database: many submits share transactions, a bad row fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gateway.errors import GatewayRetryableError
from gateway.submit import GroupCommitter
from schema.db import make_async_engine
from schema.models import new_id, outbox_table
from schema.settings import DatabaseSettings
from tests.builders import job_values


def job_row(job_id: str | None = None) -> dict[str, Any]:
    return job_values(id=job_id or new_id())


async def count(engine: Any, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_concurrent_submits_share_transactions(db_url: str) -> None:
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = GroupCommitter(engine, window_ms=5, max_rows=64)
    await asyncio.gather(*(committer.insert(job_row(), outbox_topic="jobs") for _ in range(300)))
    assert committer.rows == 300
    assert committer.commits < 300 / 4, f"{committer.commits} commits for 300 rows: no grouping happened"
    assert await count(engine, outbox_table) == 300
    await committer.close()
    await engine.dispose()


async def test_a_lone_submit_commits_without_waiting_for_the_window(db_url: str) -> None:
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = GroupCommitter(engine, window_ms=10_000, max_rows=64)
    await asyncio.wait_for(committer.insert(job_row(), outbox_topic=None), timeout=5)
    assert committer.commits == 1
    await committer.close()
    await engine.dispose()


async def test_a_conflicting_row_fails_alone(db_url: str) -> None:
    engine = make_async_engine(DatabaseSettings(url=db_url))
    committer = GroupCommitter(engine, window_ms=50, max_rows=64)
    taken = new_id()
    await committer.insert(job_row(taken), outbox_topic="jobs")
    # Keep a commit in flight so the next submits gather into one group with the duplicate.
    results = await asyncio.gather(
        committer.insert(job_row(), outbox_topic="jobs"),
        committer.insert(job_row(taken), outbox_topic="jobs"),
        committer.insert(job_row(), outbox_topic="jobs"),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert await count(engine, outbox_table) == 3
    await committer.close()
    await engine.dispose()


async def test_an_unreachable_database_is_a_retryable_error() -> None:
    engine = make_async_engine(DatabaseSettings(url="postgresql://nobody@127.0.0.1:1/nothing"))
    committer = GroupCommitter(engine, window_ms=1, max_rows=8)
    with pytest.raises(GatewayRetryableError):
        await committer.insert(job_row(), outbox_topic="jobs")
    await committer.close()
    await engine.dispose()
