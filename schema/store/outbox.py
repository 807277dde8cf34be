"""The outbox: job ids committed with their job, waiting for the relay to publish them to Kafka.

A row with ``available_at`` set is a scheduled retry: it stays out of every take until that time,
so a retry waits in the database and nothing sleeps on it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, delete, func, insert, or_, select

from schema.models import outbox_table

_OUTBOX = outbox_table


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    job_id: str
    topic: str
    created_at: datetime
    available_at: datetime | None


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(_OUTBOX.c.available_at.is_(None), _OUTBOX.c.available_at <= now)


def add(
    conn: Connection,
    entries: Sequence[tuple[str, str]],
    *,
    now: datetime,
    available_at: datetime | None = None,
) -> int:
    """Queue ``(job_id, topic)`` pairs for publishing, at once or not before ``available_at``."""
    if not entries:
        return 0
    conn.execute(
        insert(_OUTBOX),
        [
            {"job_id": job_id, "topic": topic, "created_at": now, "available_at": available_at}
            for job_id, topic in entries
        ],
    )
    return len(entries)


def take_due(conn: Connection, *, now: datetime, limit: int) -> list[OutboxRecord]:
    """The oldest rows due at ``now``, locked until the caller's transaction ends.

    On PostgreSQL several relays may run: each takes rows the others have not locked. SQLite has
    one writer at a time anyway.
    """
    query = (
        select(_OUTBOX.c.id, _OUTBOX.c.job_id, _OUTBOX.c.topic, _OUTBOX.c.created_at, _OUTBOX.c.available_at)
        .where(_due(now))
        .order_by(_OUTBOX.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [OutboxRecord(**row) for row in conn.execute(query).mappings()]


def delete_published(conn: Connection, ids: Collection[int]) -> int:
    """Forget rows the broker acknowledged; returns how many went."""
    if not ids:
        return 0
    return conn.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_(list(ids)))).rowcount


def count_pending(conn: Connection, *, now: datetime | None = None) -> int:
    """Rows waiting to be published: with ``now``, only those already due.

    Scheduled retries wait on purpose; counting them would make a healthy relay look behind.
    """
    query = select(func.count()).select_from(_OUTBOX)
    if now is not None:
        query = query.where(_due(now))
    return int(conn.execute(query).scalar_one())
