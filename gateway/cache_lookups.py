"""Exact result-cache lookups of concurrent submits, answered by one query.

Every async submit asks the cache whether its text was summarized before. One query per submit
cost a pooled connection, a pre-ping and a round trip each: with 64 clients posting, submits/s
fell to a quarter of what they were without the cache (`python -m benchmarks.submit`). Like the
group committer, this is adaptive: with no query in flight a lookup runs at once (no added
latency when quiet); while queries are in flight, lookups gather, and the next query takes them
all with one ``key IN (...)``.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from schema.store import cache
from schema.store.cache import CacheEntry


class CacheLookups:
    def __init__(
        self, engine: AsyncEngine, *, ttl_s: float, max_keys: int = 256, max_inflight: int = 2
    ) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._max_keys = max_keys
        self._max_inflight = max_inflight
        self._waiting: dict[str, list[asyncio.Future[CacheEntry | None]]] = {}
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.queries = 0

    async def get(self, key: str) -> CacheEntry | None:
        """The fresh entry under ``key`` (see :func:`schema.store.cache.get`), or None."""
        future: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._inflight < self._max_inflight:
            self._start()
        return await future

    def _start(self) -> None:
        keys = list(self._waiting)[: self._max_keys]
        waiters = {key: self._waiting.pop(key) for key in keys}
        self._inflight += 1
        task = asyncio.create_task(self._run(waiters))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, waiters: dict[str, list[asyncio.Future[CacheEntry | None]]]) -> None:
        try:
            async with self._engine.connect() as conn:
                found = await conn.run_sync(cache.get_many, list(waiters), ttl_s=self._ttl_s)
            self.queries += 1
        except Exception as exc:
            # Each submit that waited on this query fails as its own lookup would have.
            for futures in waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for key, futures in waiters.items():
                for future in futures:
                    # A submit whose client went away cancelled its future.
                    if not future.done():
                        future.set_result(found.get(key))
        finally:
            self._inflight -= 1
            if self._waiting:
                self._start()
