"""The notifier's side of the outbox of notifications: due deliveries, claims, attempts, replays.

The database holds the whole retry state: a pending delivery is due when ``next_attempt_at`` has
passed (or is NULL). To attempt one, a process first *claims* it with a guarded UPDATE that
pushes ``next_attempt_at`` forward to a lease; only the process whose UPDATE changed the row
sends, so two notifier processes (or a nudge racing a sweep) never send the same attempt. The
result is written under the same guard (still pending, ``next_attempt_at`` still our lease), so a
process whose lease ran out mid-attempt cannot overwrite the result of the one that took over.

Which status and next time follow an attempt is the notifier's decision (its retry schedule);
this module only stores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, insert, or_, select, update

from schema.models import DeliveryStatus, attempts_table, deliveries_table, utcnow
from schema.store import batches, jobs
from schema.store.errors import DeliveryNotReplayableError, NotFoundError
from schema.store.events import BATCH_EVENT_TYPES
from schema.store.records import AttemptRecord, BatchCounts, BatchRecord, DeliveryRecord, JobRecord

_DELIVERIES = deliveries_table
_ATTEMPTS = attempts_table
_PENDING = DeliveryStatus.PENDING.value
_REPLAYABLE = (DeliveryStatus.EXHAUSTED.value, DeliveryStatus.DISABLED.value)


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """A delivery this process may attempt until ``lease_until``, with what its event is about.

    ``subject`` is None when the job or batch was deleted since the event was recorded;
    ``batch_counts`` is filled for batch events only.
    """

    delivery: DeliveryRecord
    lease_until: datetime
    subject: JobRecord | BatchRecord | None
    batch_counts: BatchCounts = field(default_factory=BatchCounts)


def _due(moment: datetime) -> ColumnElement[bool]:
    return or_(_DELIVERIES.c.next_attempt_at <= moment, _DELIVERIES.c.next_attempt_at.is_(None))


def get(conn: Connection, delivery_id: str, *, tenant: str | None = None) -> DeliveryRecord:
    """The delivery; NotFoundError when it does not exist or belongs to another tenant."""
    query = select(_DELIVERIES).where(_DELIVERIES.c.id == delivery_id)
    if tenant is not None:
        query = query.where(_DELIVERIES.c.tenant == tenant)
    row = conn.execute(query).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"no delivery with id {delivery_id}")
    return DeliveryRecord.from_row(row)


def due_ids(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Ids of up to ``limit`` pending deliveries due at ``now``, the longest waiting first."""
    return list(
        conn.execute(
            select(_DELIVERIES.c.id)
            .where(_DELIVERIES.c.status == _PENDING, _due(now))
            .order_by(_DELIVERIES.c.next_attempt_at)
            .limit(limit)
        ).scalars()
    )


def claim(conn: Connection, delivery_id: str, now: datetime, lease_until: datetime) -> DeliveryClaim | None:
    """Take a pending delivery due at ``now`` until ``lease_until``; None when it is not ours.

    None covers an unknown or finished delivery, one not yet due, and one another process has
    claimed: its lease moved ``next_attempt_at`` past ``now``, so our guarded UPDATE matches
    nothing. Commit before attempting, so that other processes see the lease.
    """
    claimed = conn.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == delivery_id, _DELIVERIES.c.status == _PENDING, _due(now))
        .values(next_attempt_at=lease_until, updated_at=utcnow())
    )
    if claimed.rowcount != 1:
        return None
    delivery = get(conn, delivery_id)
    subject: JobRecord | BatchRecord | None = None
    counts = BatchCounts()
    # A subject deleted since its event was recorded leaves None, and the claim stands: the
    # notifier records a permanent failure rather than finding the delivery due again and again.
    try:
        if delivery.event_type in BATCH_EVENT_TYPES:
            if delivery.batch_id is not None:
                subject = batches.get(conn, delivery.batch_id)
                counts = batches.counts(conn, delivery.batch_id)
        elif delivery.job_id is not None:
            subject = jobs.get(conn, delivery.job_id)
    except NotFoundError:
        subject = None
    return DeliveryClaim(delivery=delivery, lease_until=lease_until, subject=subject, batch_counts=counts)


def record_attempt(
    conn: Connection,
    delivery: DeliveryRecord,
    lease_until: datetime,
    *,
    attempted_at: datetime,
    succeeded: bool,
    status_code: int | None,
    latency_ms: float | None,
    error: str | None,
    status: DeliveryStatus,
    next_attempt_at: datetime | None,
) -> bool:
    """Log one attempt and move the delivery to ``status``; False when the lease was lost.

    The attempt row is written either way, because the receiver did see the request and the
    delivery log shows what receivers saw. The delivery itself only changes while it is still
    pending under our lease: after a lost lease, the result of whoever took over stands.
    ``last_error`` becomes ``error`` (None clears it).
    """
    conn.execute(
        insert(_ATTEMPTS).values(
            delivery_id=delivery.id,
            attempted_at=attempted_at,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
            succeeded=succeeded,
        )
    )
    recorded = conn.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.id == delivery.id,
            _DELIVERIES.c.status == _PENDING,
            _DELIVERIES.c.next_attempt_at == lease_until,
        )
        .values(
            status=DeliveryStatus(status).value,
            attempts=_DELIVERIES.c.attempts + 1,
            next_attempt_at=next_attempt_at,
            last_error=error,
            updated_at=utcnow(),
        )
    )
    return recorded.rowcount == 1


def redeliver(conn: Connection, delivery_id: str, *, tenant: str | None = None) -> DeliveryRecord:
    """Send an exhausted or disabled delivery again, from now, on a fresh retry schedule.

    The event keeps its id, so a receiver that deduplicates on ``webhook-id`` still can. Raises
    :class:`NotFoundError` (also when ``tenant`` is given and does not own it) or
    :class:`DeliveryNotReplayableError` when it is pending or has already succeeded. Returns the
    delivery as reset; the caller commits, then may nudge the notifier with its id.
    """
    current = get(conn, delivery_id, tenant=tenant)
    now = utcnow()
    # Guarded on the status so that two concurrent redeliveries reset it once.
    result = conn.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == delivery_id, _DELIVERIES.c.status.in_(_REPLAYABLE))
        .values(status=_PENDING, attempts=0, next_attempt_at=now, last_error=None, updated_at=now)
    )
    if result.rowcount != 1:
        raise DeliveryNotReplayableError(
            f"delivery {delivery_id} is {current.status}; only exhausted or disabled deliveries are sent again"
        )
    return get(conn, delivery_id)


def list_for_job(
    conn: Connection, job_id: str, *, tenant: str | None = None
) -> list[tuple[DeliveryRecord, list[AttemptRecord]]]:
    """The job's deliveries in the order they were recorded, each with its attempts, oldest first.

    ``tenant`` narrows to that tenant's rows (an unknown job and another tenant's both give []).
    """
    query = select(_DELIVERIES).where(_DELIVERIES.c.job_id == job_id)
    if tenant is not None:
        query = query.where(_DELIVERIES.c.tenant == tenant)
    deliveries = [
        DeliveryRecord.from_row(row) for row in conn.execute(query.order_by(_DELIVERIES.c.id)).mappings()
    ]
    if not deliveries:
        return []
    by_delivery: dict[str, list[AttemptRecord]] = {delivery.id: [] for delivery in deliveries}
    rows = conn.execute(
        select(_ATTEMPTS).where(_ATTEMPTS.c.delivery_id.in_(by_delivery)).order_by(_ATTEMPTS.c.id)
    ).mappings()
    for row in rows:
        by_delivery[row["delivery_id"]].append(AttemptRecord.from_row(row))
    return [(delivery, by_delivery[delivery.id]) for delivery in deliveries]


def get_with_attempts(
    conn: Connection, delivery_id: str, *, tenant: str | None = None
) -> tuple[DeliveryRecord, list[AttemptRecord]]:
    """One delivery with its attempts, oldest first; NotFoundError as :func:`get`."""
    delivery = get(conn, delivery_id, tenant=tenant)
    rows = conn.execute(
        select(_ATTEMPTS).where(_ATTEMPTS.c.delivery_id == delivery_id).order_by(_ATTEMPTS.c.id)
    ).mappings()
    return delivery, [AttemptRecord.from_row(row) for row in rows]
