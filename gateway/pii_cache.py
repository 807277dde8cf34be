"""A short-lived cache of tenants' PII modes from the database, read on the submit path."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache import TTLCache
from schema.store import pii_policies

# A mode set with `condense pii set` applies to submits within this many seconds.
_CACHE_TTL_S = 2.0


class PiiModeCache:
    def __init__(
        self, engine: AsyncEngine, *, ttl_s: float = _CACHE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._cache: TTLCache[str, str | None] = TTLCache(ttl_s, clock=clock)

    async def get(self, tenant: str) -> str | None:
        async def load() -> str | None:
            async with self._engine.connect() as conn:
                return await conn.run_sync(pii_policies.get_mode, tenant)

        return await self._cache.get(tenant, load)
