"""The request-path cache loads each key once, however many requests miss it together."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cache import TTLCache
from tests.fixtures.clock import FakeClock


async def test_concurrent_misses_share_one_load() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_s=60)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return 42

    values = await asyncio.gather(*(cache.get("tenant", load) for _ in range(50)))
    assert values == [42] * 50
    assert loads == 1
    assert await cache.get("tenant", load) == 42
    assert loads == 1


async def test_entries_expire_after_their_ttl_and_can_be_forgotten() -> None:
    clock = FakeClock()
    cache: TTLCache[str, int] = TTLCache(ttl_s=2.0, clock=clock)
    counter = iter(range(100))

    async def load() -> int:
        return next(counter)

    assert await cache.get("k", load) == 0
    clock.advance(1.9)
    assert await cache.get("k", load) == 0
    clock.advance(0.2)
    assert await cache.get("k", load) == 1
    cache.forget("k")
    assert await cache.get("k", load) == 2


async def test_a_failed_load_is_not_cached() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_s=60)
    attempts = 0

    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database away")
        return 7

    with pytest.raises(ConnectionError):
        await cache.get("k", flaky)
    assert await cache.get("k", flaky) == 7
