"""A short-lived cache of tenants' default webhook endpoints, read on the submit path."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache import TTLCache
from schema.models import endpoints_table

_CACHE_TTL_S = 2.0

Endpoint = tuple[str, str]


class EndpointCache:
    """Tenant -> (url, secret) with a short TTL, so submits rarely pay a query for it."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl_s: float = _CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._cache: TTLCache[str, Endpoint | None] = TTLCache(ttl_s, clock=clock)

    async def get(self, tenant: str) -> Endpoint | None:
        async def load() -> Endpoint | None:
            async with self._engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(endpoints_table.c.url, endpoints_table.c.secret).where(
                            endpoints_table.c.tenant == tenant
                        )
                    )
                ).one_or_none()
            return (row.url, row.secret) if row is not None else None

        return await self._cache.get(tenant, load)

    def forget(self, tenant: str) -> None:
        self._cache.forget(tenant)
