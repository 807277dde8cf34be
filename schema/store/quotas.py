"""Tenants' quotas and the shared token bucket of their request rate.

Limits are rows (``tenant_limits``, NULL meaning no limit of that kind), set by the CLI. The rate
bucket is one row per tenant that every gateway replica updates with a single guarded UPDATE:
refill by the time elapsed, take one token, only where a whole token is there. The database makes
replicas agree without a lock held across a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from schema.models import JobStatus, buckets_table, jobs_table, limits_table, utcnow
from schema.store.records import _Record
from schema.store.usage import engine_tokens_on

_LIMITS = limits_table
_BUCKETS = buckets_table
_JOBS = jobs_table
LIMIT_FIELDS = ("rps", "burst", "max_running", "max_queued", "tokens_per_day")


@dataclass(frozen=True, slots=True)
class TenantLimits(_Record):
    tenant: str
    rps: float | None
    burst: int | None
    max_running: int | None
    max_queued: int | None
    tokens_per_day: int | None

    @property
    def bucket_size(self) -> float:
        """Requests one burst may hold: ``burst``, else one second's worth (at least one)."""
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, float(self.rps or 1.0))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("tenant", *LIMIT_FIELDS)}


def _upsert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def set_limits(conn: Connection, tenant: str, **values: Any) -> TenantLimits:
    """Set some of a tenant's limits (``None`` lifts one); the others keep their value."""
    unknown = set(values) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown limits: {sorted(unknown)}")
    now = utcnow()
    insert = _upsert(conn)
    statement = insert(_LIMITS).values(tenant=tenant, updated_at=now, **values)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["tenant"], set_={**values, "updated_at": now})
    )
    found = get_limits(conn, tenant)
    assert found is not None  # noqa: S101 - written just above, in this transaction
    return found


def get_limits(conn: Connection, tenant: str) -> TenantLimits | None:
    row = conn.execute(select(_LIMITS).where(_LIMITS.c.tenant == tenant)).mappings().one_or_none()
    return TenantLimits.from_row(row) if row is not None else None


def list_limits(conn: Connection) -> list[TenantLimits]:
    return [
        TenantLimits.from_row(row)
        for row in conn.execute(select(_LIMITS).order_by(_LIMITS.c.tenant)).mappings()
    ]


def clear_limits(conn: Connection, tenant: str) -> bool:
    conn.execute(delete(_BUCKETS).where(_BUCKETS.c.tenant == tenant))
    return bool(conn.execute(delete(_LIMITS).where(_LIMITS.c.tenant == tenant)).rowcount)


@dataclass(frozen=True, slots=True)
class Take:
    """The bucket after one request: allowed or not, tokens left, seconds until the next token."""

    allowed: bool
    remaining: float
    retry_after_s: float


def take(conn: Connection, tenant: str, *, rps: float, burst: float, now_s: float, cost: float = 1.0) -> Take:
    """Take ``cost`` tokens from the tenant's bucket if it holds them, atomically across replicas.

    ``now_s`` is the caller's clock (seconds since the epoch); a replica whose clock lags another's
    refills nothing rather than a negative amount. Each statement stands alone: run it on an
    autocommit connection, so that the row lock lasts one statement, not a round trip of the
    caller's event loop (with a transaction around it, replicas queue on the lock).
    """
    elapsed = case((_BUCKETS.c.refilled_at < now_s, literal(now_s) - _BUCKETS.c.refilled_at), else_=0.0)
    refilled = _BUCKETS.c.tokens + elapsed * rps
    level = case((refilled > burst, literal(burst)), else_=refilled)
    take_one = (
        update(_BUCKETS)
        .where(_BUCKETS.c.tenant == tenant, level >= cost)
        .values(
            tokens=level - cost,
            refilled_at=case((_BUCKETS.c.refilled_at < now_s, literal(now_s)), else_=_BUCKETS.c.refilled_at),
        )
        .returning(_BUCKETS.c.tokens)
    )
    row = conn.execute(take_one).one_or_none()
    if row is not None:
        return Take(True, float(row.tokens), 0.0)
    created = conn.execute(
        _upsert(conn)(_BUCKETS)
        .values(tenant=tenant, tokens=burst - cost, refilled_at=now_s)
        .on_conflict_do_nothing(index_elements=["tenant"])
        .returning(_BUCKETS.c.tenant)
    ).first()
    if created is not None:
        return Take(True, burst - cost, 0.0)
    # Another replica created the row between our UPDATE and INSERT: take from it as usual.
    row = conn.execute(take_one).one_or_none()
    if row is not None:
        return Take(True, float(row.tokens), 0.0)
    current = conn.execute(select(_BUCKETS).where(_BUCKETS.c.tenant == tenant)).mappings().one()
    level_now = min(burst, current["tokens"] + max(0.0, now_s - current["refilled_at"]) * rps)
    wait = (cost - level_now) / rps if rps > 0 else float("inf")
    return Take(False, max(0.0, level_now), max(0.0, wait))


def open_counts(conn: Connection, tenant: str) -> tuple[int, int]:
    """The tenant's jobs queued and running now."""
    rows = conn.execute(
        select(_JOBS.c.status, func.count())
        .where(
            _JOBS.c.tenant == tenant, _JOBS.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value])
        )
        .group_by(_JOBS.c.status)
    ).all()
    counts = {str(status): int(n) for status, n in rows}
    return counts.get(JobStatus.QUEUED.value, 0), counts.get(JobStatus.RUNNING.value, 0)


def tokens_today(conn: Connection, tenant: str) -> int:
    return engine_tokens_on(conn, tenant, utcnow().date().isoformat())
