"""Durable submits with group commit.

Each accepted job is one row in ``summary_jobs`` plus, for async jobs, one row in ``outbox``; both
go in one transaction, so a job is either fully accepted or not at all. Requests arriving within
``group_commit_window_ms`` share that transaction: one commit per window instead of one per request
is what lets a single gateway process accept thousands of jobs per second. Kafka is not touched
here; the relay process publishes the outbox after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import UnavailableError
from schema.store import cache, jobs
from schema.store.cache import CacheEntry
from schema.store.records import JobRecord

log = logging.getLogger(__name__)


def _is_outage(exc: DBAPIError) -> bool:
    """The database or the connection failed, as opposed to refusing one of the rows."""
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


@dataclass
class _Pending:
    job: JobRecord
    # The result cache entry a sync answer writes, in the same transaction as its job.
    entry: CacheEntry | None = None
    # Whether the entry was new, so that the Redis front copies only what the database holds.
    stored: bool = False
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        topic_for: Mapping[str, str],
        window_ms: float,
        max_rows: int,
        max_inflight: int = 4,
    ) -> None:
        self._engine = engine
        self._topic_for = dict(topic_for)
        self._window_s = window_ms / 1000
        self._max_rows = max_rows
        self._pending: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = asyncio.Semaphore(max_inflight)
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.commits = 0
        self.rows = 0

    async def insert(self, job: JobRecord, entry: CacheEntry | None = None) -> bool:
        """Return once the job (and its outbox row, when queued) is committed; raise if it was not.
        True when ``entry`` was stored (its key was new)."""
        item = _Pending(job, entry)
        self._pending.append(item)
        # Adaptive: with no commit in flight nobody else is coming soon enough to wait for, so
        # commit at once (no added latency when idle); while one is in flight, requests gather
        # and the next commit takes them all, bounded by the window.
        if self._running == 0 or len(self._pending) >= self._max_rows:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self._flush_now)
        await item.done
        return item.stored

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group, self._pending = self._pending, []
        if group:
            # Counted here, not when the task starts, so submits arriving before it runs gather.
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._commit(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _commit(self, group: list[_Pending]) -> None:
        try:
            await self._commit_group(group)
        finally:
            self._running -= 1
            if self._pending and self._running == 0:
                self._flush_now()

    async def _commit_group(self, group: list[_Pending]) -> None:
        try:
            async with self._inflight:
                await self._write(group)
        except DBAPIError as exc:
            if _is_outage(exc) or len(group) == 1:
                if _is_outage(exc):
                    log.warning("submit transaction failed: %s", exc)
                    self._fail(group, UnavailableError("the database is unavailable, try again"))
                else:
                    self._fail(group, exc)
                return
            # A row the database refused (a duplicate key, a value it cannot store) must not fail
            # its neighbours: retry them one by one, so only that row's request sees the error.
            for item in group:
                await self._commit_group([item])
            return
        except OSError as exc:
            log.warning("submit transaction failed: %s", exc)
            self._fail(group, UnavailableError("the database is unavailable, try again"))
            return
        except Exception as exc:
            self._fail(group, exc)
            return
        self.commits += 1
        self.rows += len(group)
        for item in group:
            if not item.done.done():
                item.done.set_result(None)

    async def _write(self, group: list[_Pending]) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(jobs.insert_jobs, [item.job for item in group], topic_for=self._topic_for)
            entries = [item.entry for item in group if item.entry is not None]
            if entries:
                stored = {(entry.key, entry.job_id) for entry in await conn.run_sync(cache.put, entries)}
                for item in group:
                    item.stored = item.entry is not None and (item.entry.key, item.entry.job_id) in stored

    @staticmethod
    def _fail(group: list[_Pending], exc: BaseException) -> None:
        for item in group:
            if not item.done.done():
                item.done.set_exception(exc)

    async def close(self) -> None:
        self._flush_now()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
