"""What a worker's consumer asks the database to tell a quiet queue from a stalled one.

A consumer cannot tell on its own whether there is nothing more for it or whether it lost its way
(a position past the end of a log the broker lost, a partition the group never handed on after
a member died). The job rows can: work that Kafka has had for a while and that no consumer took.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, exists, literal, or_, select, type_coerce, union_all

from schema.models import JobStatus, Route, UTCDateTime, jobs_table, outbox_table

_JOBS = jobs_table
_OUTBOX = outbox_table


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A job a consumer of its lane should have received: ``since`` is when it became deliverable
    (queued, or its retry fell due) or, for a running job whose worker died, its last heartbeat."""

    id: str
    since: datetime
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class LaneQueue:
    """The oldest waiting jobs of a lane, oldest first, and whether some worker is alive and
    running jobs of the lane (its backlog may then explain the wait)."""

    waiting: list[WaitingJob]
    busy: bool


def waiting_jobs(
    conn: Connection, lane: str, *, now: datetime, alive_since: datetime, limit: int = 50
) -> list[WaitingJob]:
    """The ``limit`` longest-waiting jobs of ``lane`` that Kafka has handed out, oldest first.

    Queued async jobs count once the relay published them (no outbox row left) and their retry
    time, if any, has come: since they were last queued (``updated_at``: insert, requeue,
    republish) or since the retry time, whichever is later. Running jobs count once untouched since
    ``alive_since``: their heartbeats stopped, the worker died, and the group owed their ids to
    another member.
    """
    queued = select(
        _JOBS.c.id,
        case((_JOBS.c.retry_at > _JOBS.c.updated_at, _JOBS.c.retry_at), else_=_JOBS.c.updated_at).label(
            "since"
        ),
        literal(False).label("abandoned"),
    ).where(
        _JOBS.c.status == JobStatus.QUEUED.value,
        _JOBS.c.route == Route.ASYNC.value,
        _JOBS.c.lane == lane,
        or_(_JOBS.c.retry_at.is_(None), _JOBS.c.retry_at <= now),
        # NOT IN over a NOT NULL column: PostgreSQL hashes the outbox once and SQLite builds a
        # temporary index, where a correlated NOT EXISTS would scan the unindexed outbox per job.
        _JOBS.c.id.not_in(select(_OUTBOX.c.job_id)),
    )
    abandoned = select(_JOBS.c.id, _JOBS.c.updated_at.label("since"), literal(True).label("abandoned")).where(
        _JOBS.c.status == JobStatus.RUNNING.value,
        _JOBS.c.lane == lane,
        _JOBS.c.updated_at <= alive_since,
    )
    both = union_all(queued, abandoned).subquery()
    # A UNION loses the column type on SQLite, which would hand back naive text.
    since = type_coerce(both.c.since, UTCDateTime())
    rows = conn.execute(
        select(both.c.id, since.label("since"), both.c.abandoned).order_by(since, both.c.id).limit(limit)
    ).all()
    return [WaitingJob(row.id, row.since, bool(row.abandoned)) for row in rows]


def busy(conn: Connection, lane: str, *, alive_since: datetime) -> bool:
    """Whether a job of ``lane`` is running and was touched (claimed, heartbeat, progress) after
    ``alive_since``: some worker is alive and working on the lane."""
    return bool(
        conn.execute(
            select(
                exists().where(
                    _JOBS.c.status == JobStatus.RUNNING.value,
                    _JOBS.c.lane == lane,
                    _JOBS.c.updated_at > alive_since,
                )
            )
        ).scalar_one()
    )


def lane_queue(conn: Connection, lane: str, *, now: datetime, alive_since: datetime) -> LaneQueue:
    return LaneQueue(
        waiting=waiting_jobs(conn, lane, now=now, alive_since=alive_since),
        busy=busy(conn, lane, alive_since=alive_since),
    )
