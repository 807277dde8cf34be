"""A short-lived cache of tenants' default webhook endpoints, read on the submit path."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.models import endpoints_table

_CACHE_TTL_S = 2.0


class EndpointCache:
    """Tenant -> (url, secret) with a short TTL, so submits rarely pay a query for it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._entries: dict[str, tuple[tuple[str, str] | None, float]] = {}

    async def get(self, tenant: str) -> tuple[str, str] | None:
        cached = self._entries.get(tenant)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(endpoints_table.c.url, endpoints_table.c.secret).where(
                        endpoints_table.c.tenant == tenant
                    )
                )
            ).one_or_none()
        value = (row.url, row.secret) if row is not None else None
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[tenant] = (value, time.monotonic() + _CACHE_TTL_S)
        return value

    def forget(self, tenant: str) -> None:
        self._entries.pop(tenant, None)
