"""API keys: created and listed by the CLI, checked on every /v1 request.

Only a SHA-256 of each key is stored. Keys are long random strings, so a plain hash (not a slow
password hash) is enough and keeps the per-request check cheap.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache import TTLCache
from gateway.errors import NotFoundError, UnauthorizedError
from schema.models import ApiKey, new_id, utcnow

KEY_PREFIX = "cnd_"
OPEN_TENANT = "default"
_CACHE_TTL_S = 2.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    id: str
    tenant: str
    key: str


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant: str
    prefix: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


def create_key(engine: Engine, tenant: str, name: str | None = None) -> CreatedKey:
    if not tenant.strip():
        raise ValueError("tenant must not be empty")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(ApiKey).values(
                id=key_id, tenant=tenant, prefix=key[:12], key_hash=hash_key(key), name=name
            )
        )
    return CreatedKey(id=key_id, tenant=tenant, key=key)


def list_keys(engine: Engine) -> list[KeyInfo]:
    with engine.connect() as conn:
        rows = conn.execute(select(ApiKey).order_by(ApiKey.created_at)).mappings().all()
    return [
        KeyInfo(
            id=r["id"],
            tenant=r["tenant"],
            prefix=r["prefix"],
            name=r["name"],
            created_at=r["created_at"],
            revoked_at=r["revoked_at"],
        )
        for r in rows
    ]


def revoke_key(engine: Engine, key_id: str) -> None:
    with engine.begin() as conn:
        result = conn.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
    if result.rowcount == 0:
        raise NotFoundError(f"no active key with id {key_id}")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Maps a bearer key to its tenant, with a short cache so most requests skip the database.

    Open mode (no key needed, tenant ``default``) is for a fresh install on loopback only: it ends
    for good once any key has been created, so revoking every key closes the API instead of opening
    it to everyone, and it never applies to a gateway listening beyond loopback.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        open_allowed: bool,
        ttl_s: float = _CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._open_allowed = open_allowed
        self._tenants: TTLCache[str, str | None] = TTLCache(ttl_s, clock=clock)
        self._any_key: TTLCache[str, bool] = TTLCache(ttl_s, clock=clock)
        self._closed = not open_allowed

    async def any_key_created(self) -> bool:
        """Whether a key was ever created, revoked ones included."""

        async def load() -> bool:
            async with self._engine.connect() as conn:
                count = (await conn.execute(select(func.count()).select_from(ApiKey))).scalar_one()
            return bool(count > 0)

        return await self._any_key.get("any", load)

    async def is_open(self) -> bool:
        if self._closed:
            return False
        if await self.any_key_created():
            # A latch: no later state of the key table can reopen this process.
            self._closed = True
            return False
        return True

    async def tenant_for(self, authorization: str | None) -> str:
        if await self.is_open():
            return OPEN_TENANT
        if not authorization:
            raise UnauthorizedError("missing Authorization: Bearer <key> header")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise UnauthorizedError("expected Authorization: Bearer <key>")
        digest = hash_key(key.strip())

        async def load() -> str | None:
            async with self._engine.connect() as conn:
                tenant: str | None = (
                    await conn.execute(
                        select(ApiKey.tenant).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
                    )
                ).scalar_one_or_none()
            return tenant

        tenant = await self._tenants.get(digest, load)
        if tenant is None:
            raise UnauthorizedError("invalid or revoked API key")
        return tenant
