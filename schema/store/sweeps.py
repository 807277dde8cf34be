"""What the relay's sweeper repairs: jobs Kafka may have lost, claims of vanished workers, and
results past the retention period.

Each function handles at most ``limit`` jobs, oldest first, so that one sweep stays a short
transaction however far behind it is; the next sweep takes the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Select, delete, exists, or_, select, update

from schema.models import (
    FINAL_STATUSES,
    JobStatus,
    Route,
    attempts_table,
    batches_table,
    deliveries_table,
    jobs_table,
    outbox_table,
)
from schema.store import outbox

_JOBS = jobs_table
_OUTBOX = outbox_table
_BATCHES = batches_table
_DELIVERIES = deliveries_table
_ATTEMPTS = attempts_table
_FINAL_VALUES = tuple(status.value for status in FINAL_STATUSES)


@dataclass(frozen=True, slots=True)
class Purged:
    jobs: int = 0
    batches: int = 0


def _locked(conn: Connection, query: Select[tuple[str]]) -> Select[tuple[str]]:
    # Several relays may sweep at once on PostgreSQL: each takes jobs the others have not locked,
    # so no job is requeued or republished twice by one round of sweeps.
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def _requeue(
    conn: Connection,
    candidates: Select[tuple[str]],
    from_status: JobStatus,
    *,
    now: datetime,
    topic_for: Mapping[str, str],
) -> list[str]:
    """Move the candidate jobs (still in ``from_status``) to queued and give each an outbox row."""
    # Two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE): PostgreSQL may run
    # such a subquery once per row, each run skipping the rows just updated, and blow past the limit.
    ids = list(conn.execute(_locked(conn, candidates)).scalars())
    if not ids:
        return []
    # The status guard is repeated: on SQLite nothing locks the candidates, and a worker may have
    # claimed or finished one in between.
    rows = conn.execute(
        update(_JOBS)
        .where(_JOBS.c.id.in_(ids), _JOBS.c.status == from_status.value)
        .values(status=JobStatus.QUEUED.value, updated_at=now)
        .returning(_JOBS.c.id, _JOBS.c.lane)
    ).all()
    outbox.add(conn, [(row.id, topic_for[row.lane]) for row in rows], now=now)
    return [row.id for row in rows]


def republish_queued(
    conn: Connection, before: datetime, limit: int, *, now: datetime, topic_for: Mapping[str, str]
) -> list[str]:
    """Publish again queued async jobs last touched before ``before``; returns their ids.

    Skipped: jobs that still have an outbox row (they will be published anyway, maybe as a
    scheduled retry) and jobs whose retry is not due yet. Each republished job's ``updated_at``
    becomes ``now``, so the next sweep leaves it alone until it is stale again.
    """
    candidates = (
        select(_JOBS.c.id)
        .where(
            _JOBS.c.status == JobStatus.QUEUED.value,
            _JOBS.c.route == Route.ASYNC.value,
            _JOBS.c.updated_at < before,
            or_(_JOBS.c.retry_at.is_(None), _JOBS.c.retry_at <= now),
            ~exists().where(_OUTBOX.c.job_id == _JOBS.c.id),
        )
        .order_by(_JOBS.c.updated_at)
        .limit(limit)
    )
    return _requeue(conn, candidates, JobStatus.QUEUED, now=now, topic_for=topic_for)


def requeue_abandoned(
    conn: Connection, stale_before: datetime, limit: int, *, now: datetime, topic_for: Mapping[str, str]
) -> list[str]:
    """Hand back running jobs untouched since ``stale_before`` (their worker vanished): each goes
    back to queued with a new outbox row. Returns their ids."""
    candidates = (
        select(_JOBS.c.id)
        .where(_JOBS.c.status == JobStatus.RUNNING.value, _JOBS.c.updated_at < stale_before)
        .order_by(_JOBS.c.updated_at)
        .limit(limit)
    )
    return _requeue(conn, candidates, JobStatus.RUNNING, now=now, topic_for=topic_for)


def purge_expired(conn: Connection, cutoff: datetime, limit: int) -> Purged:
    """Delete final jobs finished before ``cutoff`` with their deliveries and attempts, and
    finished batches none of whose jobs is left. Queued and running jobs are never deleted.

    No index covers ``finished_at``: unordered, the scan stops at ``limit`` matches.
    """
    expired = list(
        conn.execute(
            select(_JOBS.c.id)
            .where(_JOBS.c.status.in_(_FINAL_VALUES), _JOBS.c.finished_at < cutoff)
            .limit(limit)
        ).scalars()
    )
    if expired:
        _delete_deliveries(conn, select(_DELIVERIES.c.id).where(_DELIVERIES.c.job_id.in_(expired)))
        conn.execute(delete(_JOBS).where(_JOBS.c.id.in_(expired)))
    batch_ids = list(
        conn.execute(
            select(_BATCHES.c.id)
            .where(_BATCHES.c.finished_at < cutoff, ~exists().where(_JOBS.c.batch_id == _BATCHES.c.id))
            .limit(limit)
        ).scalars()
    )
    if batch_ids:
        _delete_deliveries(conn, select(_DELIVERIES.c.id).where(_DELIVERIES.c.batch_id.in_(batch_ids)))
        conn.execute(delete(_BATCHES).where(_BATCHES.c.id.in_(batch_ids)))
    return Purged(jobs=len(expired), batches=len(batch_ids))


def _delete_deliveries(conn: Connection, delivery_ids: Select[tuple[str]]) -> None:
    # Attempts would go by ON DELETE CASCADE, but SQLite enforces it only on connections that
    # turned foreign keys on; deleting them first holds on every connection.
    conn.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.delivery_id.in_(delivery_ids.scalar_subquery())))
    conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.id.in_(delivery_ids.scalar_subquery())))
