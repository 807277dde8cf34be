"""Notification events: recorded by whoever finishes a job, delivered later by the notifier.

An event becomes one ``notification_deliveries`` row per destination, written in the same
transaction as the status change that caused it, so a job can never end without its
notification being on record (nor be notified about a change that rolled back). The notifier
finds the rows by ``next_attempt_at``; a broker message only makes it look sooner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from sqlalchemy import Connection, Engine, Table, insert, select, update

from schema.errors import PermanentError
from schema.models import Channel, DeliveryStatus, JobStatus, NotificationDelivery, new_id, utcnow

SUMMARY_SUCCEEDED: Final = "summary.succeeded"
SUMMARY_FAILED: Final = "summary.failed"
SUMMARY_CANCELED: Final = "summary.canceled"
BATCH_COMPLETED: Final = "batch.completed"

JOB_EVENT_TYPES: Final = frozenset({SUMMARY_SUCCEEDED, SUMMARY_FAILED, SUMMARY_CANCELED})
BATCH_EVENT_TYPES: Final = frozenset({BATCH_COMPLETED})
EVENT_TYPES: Final = JOB_EVENT_TYPES | BATCH_EVENT_TYPES

EVENT_FOR_STATUS: Final[Mapping[str, str]] = {
    JobStatus.SUCCEEDED: SUMMARY_SUCCEEDED,
    JobStatus.FAILED: SUMMARY_FAILED,
    JobStatus.CANCELED: SUMMARY_CANCELED,
}

_DELIVERIES = cast(Table, NotificationDelivery.__table__)


class DeliveryNotFoundError(PermanentError):
    code = "not_found"
    http_status = 404


class DeliveryNotReplayableError(PermanentError):
    """Only a delivery that gave up (exhausted or disabled) can be sent again."""

    code = "delivery_not_replayable"
    http_status = 409


def new_event_id() -> str:
    """The ``webhook-id`` of an event: unique, and the same on every attempt to deliver it."""
    return f"msg_{new_id().replace('-', '')}"


def _destinations(row: Mapping[Any, Any]) -> list[tuple[str, str, str | None]]:
    found: list[tuple[str, str, str | None]] = []
    if row.get("webhook_url"):
        found.append((Channel.WEBHOOK.value, row["webhook_url"], row.get("webhook_secret")))
    if row.get("email"):
        found.append((Channel.EMAIL.value, row["email"], None))
    return found


def _record(
    conn: Connection, row: Mapping[Any, Any], event_type: str, *, job_id: str | None, batch_id: str | None
) -> list[str]:
    now = utcnow()
    values = [
        {
            "id": new_id(),
            "tenant": row["tenant"],
            "job_id": job_id,
            "batch_id": batch_id,
            "event_type": event_type,
            "channel": channel,
            "target": target,
            "secret": secret,
            "event_id": new_event_id(),
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "created_at": now,
            "updated_at": now,
        }
        for channel, target, secret in _destinations(row)
    ]
    if values:
        conn.execute(insert(_DELIVERIES), values)
    return [value["id"] for value in values]


def record_job_event(conn: Connection, job_row: Mapping[Any, Any], event_type: str) -> list[str]:
    """Record ``event_type`` for a job on ``conn``'s open transaction; return the delivery ids.

    ``job_row`` is a mapping of ``summary_jobs`` columns (only id, tenant, webhook_url,
    webhook_secret and email are read). A job with neither a webhook nor an email records nothing.
    The caller commits, then may nudge the notifier with each id.
    """
    if event_type not in JOB_EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a job event type")
    return _record(conn, job_row, event_type, job_id=job_row["id"], batch_id=None)


def record_batch_event(
    conn: Connection, batch_row: Mapping[Any, Any], event_type: str = BATCH_COMPLETED
) -> list[str]:
    """Record ``event_type`` for a batch (a mapping of ``batches`` columns); return the delivery ids."""
    if event_type not in BATCH_EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a batch event type")
    return _record(conn, batch_row, event_type, job_id=None, batch_id=batch_row["id"])


def _redeliver(conn: Connection, delivery_id: str, tenant: str | None) -> None:
    query = select(_DELIVERIES.c.status).where(_DELIVERIES.c.id == delivery_id)
    if tenant is not None:
        query = query.where(_DELIVERIES.c.tenant == tenant)
    status = conn.execute(query).scalar_one_or_none()
    if status is None:
        raise DeliveryNotFoundError(f"no delivery with id {delivery_id}")
    replayable = (DeliveryStatus.EXHAUSTED.value, DeliveryStatus.DISABLED.value)
    now = utcnow()
    # Guarded on the status so that two concurrent redeliveries reset it once.
    result = conn.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == delivery_id, _DELIVERIES.c.status.in_(replayable))
        .values(
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        raise DeliveryNotReplayableError(
            f"delivery {delivery_id} is {status}; only exhausted or disabled deliveries are sent again"
        )


def redeliver(bind: Engine | Connection, delivery_id: str, *, tenant: str | None = None) -> None:
    """Send an exhausted or disabled delivery again, from now, on a fresh retry schedule.

    The event keeps its id, so a receiver that deduplicates on ``webhook-id`` still can. Raises
    :class:`DeliveryNotFoundError` (also when ``tenant`` is given and does not own it) or
    :class:`DeliveryNotReplayableError` when it is pending or has already succeeded. Given a
    Connection, runs in the caller's transaction.
    """
    if isinstance(bind, Connection):
        _redeliver(bind, delivery_id, tenant)
        return
    with bind.begin() as conn:
        _redeliver(conn, delivery_id, tenant)
