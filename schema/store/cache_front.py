"""The result cache's Redis front (``cache.backend: redis``): hot entries one round trip away.

The database stays the source of truth. A lookup asks Redis first and the database on a miss; a
database hit is copied to Redis, and so is every entry the database newly stored. Redis holds
exact keys only: near duplicates are found in the database, which has the fingerprints.

Layout under ``cache.redis_key_prefix`` (P):

- ``P:e:<scope>:<key>``: one entry as JSON, expiring ``cache.redis_ttl_s`` after it was put
  (sooner when ``cache.ttl_s`` ends its life first). The scope (the tenant, or ``*`` when the
  cache is global) is in the name, so one tenant's lookups never reach another's entries.
- ``P:lru``: a sorted set of entry names by last use. Each write trims it to
  ``cache.redis_max_entries``, deleting the entries it drops: the bound holds whatever Redis's
  own ``maxmemory-policy`` is.
- ``P:owners`` (entry name -> tenant whose job wrote it) and ``P:t:<tenant>`` (that tenant's
  entry names): how ``DELETE /v1/cache`` finds a tenant's entries, in the global scope too.

Writes and purges are Lua scripts, so that a crash or a concurrent writer never leaves an entry
outside the bound. Redis being away never fails a request: the operation counts an error
(``condense_cache_redis_errors``), the database answers, and Redis is left alone for
``_RETRY_AFTER_S`` so that an outage does not cost every request a timeout. A purge is the
exception: it always tries, and its caller reports a failure, since a copy left behind would
be served again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.metrics import CACHE_REDIS_ERRORS, CACHE_REDIS_LOOKUPS
from schema.models import utcnow
from schema.settings import CacheSettings
from schema.store.cache import CacheEntry
from schema.store.errors import CacheFrontUnavailableError

log = logging.getLogger(__name__)

# After a failure Redis is skipped this long: during an outage each request would otherwise wait
# for its own timeout before the database answers.
_RETRY_AFTER_S: Final = 5.0
_DATETIME_FIELDS: Final = ("created_at", "last_hit_at")

# KEYS: lru, owners. ARGV: now (ms), max entries, tenant index prefix, then per entry its name,
# tenant, JSON and expiry (ms).
_PUT: Final = """
local lru, owners = KEYS[1], KEYS[2]
local now, cap, index = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for i = 4, #ARGV, 4 do
  local name, tenant = ARGV[i], ARGV[i + 1]
  redis.call('SET', name, ARGV[i + 2], 'PX', ARGV[i + 3])
  redis.call('ZADD', lru, now, name)
  local before = redis.call('HGET', owners, name)
  if before and before ~= tenant then
    redis.call('SREM', index .. before, name)
  end
  redis.call('HSET', owners, name, tenant)
  redis.call('SADD', index .. tenant, name)
end
local over = redis.call('ZCARD', lru) - cap
local evicted = 0
if over > 0 then
  local dropped = redis.call('ZPOPMIN', lru, over)
  for i = 1, #dropped, 2 do
    local name = dropped[i]
    local tenant = redis.call('HGET', owners, name)
    if tenant then
      redis.call('SREM', index .. tenant, name)
    end
    redis.call('HDEL', owners, name)
    redis.call('DEL', name)
    evicted = evicted + 1
  end
end
return evicted
"""

# KEYS: lru, owners, the tenant's index. Returns how many entries were still there.
_PURGE: Final = """
local deleted = 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  deleted = deleted + redis.call('DEL', name)
  redis.call('ZREM', KEYS[1], name)
  redis.call('HDEL', KEYS[2], name)
end
redis.call('DEL', KEYS[3])
return deleted
"""


def encode(entry: CacheEntry) -> str:
    row = entry.as_row()
    for name in _DATETIME_FIELDS:
        if row[name] is not None:
            row[name] = row[name].isoformat()
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def decode(raw: bytes | str) -> CacheEntry:
    row = json.loads(raw)
    for name in _DATETIME_FIELDS:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return CacheEntry.from_row(row)


class _Front:
    """What both clients share: names, freshness, the breaker; subclasses do the I/O."""

    def __init__(
        self,
        rules: CacheSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.prefix = rules.redis_key_prefix
        self._clock = clock
        self._monotonic = monotonic
        self._skip_until = 0.0

    # -- names --------------------------------------------------------------------------------

    @property
    def lru(self) -> str:
        return f"{self.prefix}:lru"

    @property
    def owners(self) -> str:
        return f"{self.prefix}:owners"

    @property
    def index_prefix(self) -> str:
        return f"{self.prefix}:t:"

    def name(self, scope: str, key: str) -> str:
        # The key is 64 hex digits, so the name parses from the right whatever the scope holds.
        return f"{self.prefix}:e:{scope}:{key}"

    # -- rules --------------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        return now or self._clock()

    def _fresh(self, entry: CacheEntry, now: datetime) -> bool:
        ttl_s = self.rules.ttl_s
        return ttl_s <= 0 or entry.created_at >= now - timedelta(seconds=ttl_s)

    def _expiry_ms(self, entry: CacheEntry, now: datetime) -> int:
        """How long a copy of ``entry`` may live in Redis: ``redis_ttl_s``, or less when
        ``ttl_s`` stops serving it sooner; 0 when it is already too old to serve."""
        life_s = self.rules.redis_ttl_s
        if self.rules.ttl_s > 0:
            left_s = self.rules.ttl_s - (now - entry.created_at).total_seconds()
            life_s = min(life_s, left_s)
        return max(0, int(life_s * 1000))

    def _put_args(self, entries: Sequence[CacheEntry], now: datetime) -> list[Any]:
        args: list[Any] = []
        for entry in entries:
            expiry_ms = self._expiry_ms(entry, now)
            if expiry_ms > 0:
                args += [self.name(entry.scope, entry.key), entry.tenant, encode(entry), expiry_ms]
        return args

    def _found(
        self, items: Sequence[tuple[str, str]], values: Sequence[bytes | None], now: datetime
    ) -> dict[str, CacheEntry]:
        found: dict[str, CacheEntry] = {}
        for (_scope, key), raw in zip(items, values, strict=True):
            if raw is None:
                continue
            entry = decode(raw)
            if entry.key == key and self._fresh(entry, now):
                found[key] = entry
        hits = len(found)
        if hits:
            CACHE_REDIS_LOOKUPS.labels(result="hit").inc(hits)
        if len(items) > hits:
            CACHE_REDIS_LOOKUPS.labels(result="miss").inc(len(items) - hits)
        return found

    @staticmethod
    def _score(now: datetime) -> int:
        return int(now.timestamp() * 1000)

    # -- the breaker --------------------------------------------------------------------------

    def _available(self) -> bool:
        return self._monotonic() >= self._skip_until

    def _failed(self, operation: str, exc: Exception) -> None:
        CACHE_REDIS_ERRORS.labels(operation=operation).inc()
        if self._available():
            # Once per outage, not once per request.
            log.warning(
                "result cache: Redis %s failed (%s: %s); the database answers, Redis is retried in %.0f s",
                operation,
                type(exc).__name__,
                exc,
                _RETRY_AFTER_S,
            )
        self._skip_until = self._monotonic() + _RETRY_AFTER_S


# What a Redis call may raise when Redis is away or answers nonsense: the front then steps aside.
_FAILURES: Final = (redis.RedisError, OSError, ValueError, KeyError, TypeError)


def _timeouts(rules: CacheSettings) -> dict[str, Any]:
    return {"socket_timeout": rules.redis_timeout_s, "socket_connect_timeout": rules.redis_timeout_s}


# One immediate retry covers a pooled connection Redis closed; more would only delay the
# database's answer during an outage.
_RETRIES: Final = 1


class RedisCacheFront(_Front):
    """The front for synchronous callers (the workers)."""

    def __init__(self, client: redis.Redis, rules: CacheSettings, **kwargs: Any) -> None:
        super().__init__(rules, **kwargs)
        self.client = client
        self._put = client.register_script(_PUT)
        self._purge = client.register_script(_PURGE)

    @classmethod
    def from_settings(cls, rules: CacheSettings) -> RedisCacheFront:
        return cls(
            redis.Redis.from_url(rules.redis_url, retry=Retry(NoBackoff(), _RETRIES), **_timeouts(rules)),
            rules,
        )

    def get_many(
        self, items: Sequence[tuple[str, str]], *, now: datetime | None = None
    ) -> dict[str, CacheEntry]:
        """Fresh entries of ``items`` ((scope, key) pairs) found in Redis, by key; a hit counts
        as a use (the least recently used are evicted first)."""
        if not items or not self._available():
            return {}
        at = self._now(now)
        names = [self.name(scope, key) for scope, key in items]
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.mget(names)
            # XX: touch the names still there, never add one.
            pipe.zadd(self.lru, dict.fromkeys(names, self._score(at)), xx=True)
            values, _touched = pipe.execute()
            return self._found(items, values, at)
        except _FAILURES as exc:
            self._failed("get", exc)
            return {}

    def put(self, entries: Sequence[CacheEntry], *, now: datetime | None = None) -> None:
        """Copy entries the database holds to Redis, evicting the least recently used beyond the bound."""
        if not entries or not self._available():
            return
        at = self._now(now)
        args = self._put_args(entries, at)
        if not args:
            return
        try:
            self._put(
                keys=[self.lru, self.owners],
                args=[self._score(at), self.rules.redis_max_entries, self.index_prefix, *args],
            )
        except _FAILURES as exc:
            self._failed("put", exc)

    def purge(self, tenant: str) -> int:
        """Delete every copy of the tenant's entries; CacheFrontUnavailableError when Redis is away."""
        try:
            return int(self._purge(keys=[self.lru, self.owners, self.index_prefix + tenant]))
        except _FAILURES as exc:
            self._failed("purge", exc)
            raise CacheFrontUnavailableError(str(exc)) from exc

    def close(self) -> None:
        self.client.close()


class AsyncRedisCacheFront(_Front):
    """The front for the gateway's event loop: the same operations on ``redis.asyncio``."""

    def __init__(self, client: aredis.Redis, rules: CacheSettings, **kwargs: Any) -> None:
        super().__init__(rules, **kwargs)
        self.client = client
        self._put = client.register_script(_PUT)
        self._purge = client.register_script(_PURGE)

    @classmethod
    def from_settings(cls, rules: CacheSettings) -> AsyncRedisCacheFront:
        return cls(
            aredis.Redis.from_url(
                rules.redis_url, retry=AsyncRetry(NoBackoff(), _RETRIES), **_timeouts(rules)
            ),
            rules,
        )

    async def get(self, scope: str, key: str, *, now: datetime | None = None) -> CacheEntry | None:
        return (await self.get_many([(scope, key)], now=now)).get(key)

    async def get_many(
        self, items: Sequence[tuple[str, str]], *, now: datetime | None = None
    ) -> dict[str, CacheEntry]:
        if not items or not self._available():
            return {}
        at = self._now(now)
        names = [self.name(scope, key) for scope, key in items]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.mget(names)
                pipe.zadd(self.lru, dict.fromkeys(names, self._score(at)), xx=True)
                values, _touched = await pipe.execute()
            return self._found(items, values, at)
        except _FAILURES as exc:
            self._failed("get", exc)
            return {}

    async def put(self, entries: Sequence[CacheEntry], *, now: datetime | None = None) -> None:
        if not entries or not self._available():
            return
        at = self._now(now)
        args = self._put_args(entries, at)
        if not args:
            return
        try:
            await self._put(
                keys=[self.lru, self.owners],
                args=[self._score(at), self.rules.redis_max_entries, self.index_prefix, *args],
            )
        except _FAILURES as exc:
            self._failed("put", exc)

    async def purge(self, tenant: str) -> int:
        try:
            return int(await self._purge(keys=[self.lru, self.owners, self.index_prefix + tenant]))
        except _FAILURES as exc:
            self._failed("purge", exc)
            raise CacheFrontUnavailableError(str(exc)) from exc

    async def close(self) -> None:
        await self.client.aclose()
