"""Tenants' quotas on the submit path: request rate, queued and running jobs, tokens a day.

Limits are read from the database through a short TTL cache, so a tenant without limits costs a
dictionary lookup. The request rate is a token bucket in the database (see
:mod:`schema.store.quotas`), shared by every gateway replica; the other quotas count rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from common.metrics import RATE_LIMITED
from gateway.cache import TTLCache
from gateway.errors import RateLimitedError
from schema.store import quotas
from schema.store.quotas import TenantLimits

_LIMITS_TTL_S = 5.0
_DAY_S = 86_400.0
# A replica takes up to this many seconds' worth of a tenant's rate from the shared bucket at
# once, and admits from that allotment without a round trip. Tokens taken are gone from the
# bucket, so replicas together never pass the limit; unused ones lapse after _ALLOTMENT_S.
_ALLOTMENT_SHARE_S = 0.05
_ALLOTMENT_S = 1.0
# Running jobs and the day's tokens are read at most this often per tenant: they move with
# workers, not with each request, and a query per request would cost every submit milliseconds.
_COUNTS_TTL_S = 1.0


class QuotaGuard:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl_s: float = _LIMITS_TTL_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._monotonic = monotonic
        # tenant -> (tokens this replica holds, monotonic time they lapse)
        self._allotments: dict[str, tuple[float, float]] = {}
        self._refills: dict[str, asyncio.Lock] = {}
        self._limits: TTLCache[str, TenantLimits | None] = TTLCache(ttl_s, clock=monotonic)
        self._running: TTLCache[str, int] = TTLCache(_COUNTS_TTL_S, clock=monotonic)
        self._tokens: TTLCache[str, int] = TTLCache(_COUNTS_TTL_S, clock=monotonic)

    async def limits(self, tenant: str) -> TenantLimits | None:
        async def load() -> TenantLimits | None:
            async with self._engine.connect() as conn:
                return await conn.run_sync(quotas.get_limits, tenant)

        return await self._limits.get(tenant, load)

    def forget(self, tenant: str) -> None:
        self._limits.forget(tenant)
        self._running.forget(tenant)
        self._tokens.forget(tenant)
        self._allotments.pop(tenant, None)

    async def admit(self, tenant: str) -> None:
        """Let a request in, or raise RateLimitedError: request rate, running jobs, tokens a day."""
        limits = await self.limits(tenant)
        if limits is None:
            return
        if limits.rps is not None:
            await self._take(tenant, limits)
        if limits.max_running is not None:

            async def load_running() -> int:
                return (await self._counts(tenant))[1]

            running = await self._running.get(tenant, load_running)
            if running >= limits.max_running:
                self._refuse(tenant, "max_running", limits.max_running, 0, 1.0, f"{running} jobs are running")
        if limits.tokens_per_day is not None:

            async def load_tokens() -> int:
                async with self._engine.connect() as conn:
                    return await conn.run_sync(quotas.tokens_today, tenant)

            used = await self._tokens.get(tenant, load_tokens)
            if used >= limits.tokens_per_day:
                self._refuse(
                    tenant,
                    "tokens_per_day",
                    limits.tokens_per_day,
                    0,
                    _DAY_S - self._clock() % _DAY_S,
                    f"{used} tokens used today (UTC)",
                )

    async def admit_queue(self, tenant: str, documents: int) -> None:
        """Refuse, all or nothing, ``documents`` more queued jobs beyond the tenant's quota."""
        limits = await self.limits(tenant)
        if limits is None or limits.max_queued is None:
            return
        queued, _running = await self._counts(tenant)
        if queued + documents > limits.max_queued:
            self._refuse(
                tenant,
                "max_queued",
                limits.max_queued,
                max(0, limits.max_queued - queued),
                1.0,
                f"{queued} documents are queued; {documents} more would pass the quota of {limits.max_queued}",
            )

    async def _counts(self, tenant: str) -> tuple[int, int]:
        async with self._engine.connect() as conn:
            return await conn.run_sync(quotas.open_counts, tenant)

    async def _take(self, tenant: str, limits: TenantLimits) -> None:
        assert limits.rps is not None  # noqa: S101 - checked by the caller
        if self._take_held(tenant):
            return
        # One refill at a time per tenant: requests arriving meanwhile wait for it instead of each
        # taking a round trip (and a pooled connection) of their own.
        lock = self._refills.setdefault(tenant, asyncio.Lock())
        async with lock:
            if self._take_held(tenant):
                return
            await self._refill(tenant, limits)

    def _take_held(self, tenant: str) -> bool:
        held, lapses = self._allotments.get(tenant, (0.0, 0.0))
        if held >= 1 and self._monotonic() < lapses:
            self._allotments[tenant] = (held - 1, lapses)
            return True
        return False

    async def _refill(self, tenant: str, limits: TenantLimits) -> None:
        assert limits.rps is not None  # noqa: S101 - checked by the caller
        size = limits.bucket_size
        now = self._monotonic()
        chunk = max(1, min(int(limits.rps * _ALLOTMENT_SHARE_S), int(size // 4)))
        async with self._engine.connect() as conn:
            # Autocommit: the bucket row is locked for one statement, not across awaits.
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            taken = await auto.run_sync(
                quotas.take, tenant, rps=limits.rps, burst=size, now_s=self._clock(), cost=chunk
            )
            if not taken.allowed and chunk > 1:
                chunk = 1
                taken = await auto.run_sync(
                    quotas.take, tenant, rps=limits.rps, burst=size, now_s=self._clock()
                )
        if taken.allowed:
            self._allotments[tenant] = (chunk - 1, now + _ALLOTMENT_S)
        if not taken.allowed:
            self._refuse(
                tenant,
                "rps",
                size,
                taken.remaining,
                taken.retry_after_s,
                f"over {limits.rps:g} requests a second",
            )

    @staticmethod
    def _refuse(tenant: str, kind: str, limit: float, remaining: float, reset_s: float, why: str) -> None:
        RATE_LIMITED.labels(tenant=tenant, limit=kind).inc()
        raise RateLimitedError(
            f"over the tenant's {kind} quota: {why}", limit=limit, remaining=remaining, reset_s=reset_s
        )
