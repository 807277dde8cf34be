"""Notification events: recorded by whoever finishes a job, delivered later by the notifier.

An event becomes one ``notification_deliveries`` row per destination, written in the same
transaction as the status change that caused it, so a job can never end without its
notification being on record (nor be notified about a change that rolled back). The notifier
finds the rows by ``next_attempt_at``; a broker message only makes it look sooner. What happens
to the rows after that is :mod:`schema.store.deliveries`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sqlalchemy import Connection, insert

from schema.models import Channel, DeliveryStatus, JobStatus, deliveries_table, new_id, utcnow

SUMMARY_SUCCEEDED: Final = "summary.succeeded"
SUMMARY_FAILED: Final = "summary.failed"
SUMMARY_CANCELED: Final = "summary.canceled"
BATCH_COMPLETED: Final = "batch.completed"
# Sent on request to a tenant's endpoint to check it receives and verifies; about no job or batch.
WEBHOOK_TEST: Final = "webhook.test"

JOB_EVENT_TYPES: Final = frozenset({SUMMARY_SUCCEEDED, SUMMARY_FAILED, SUMMARY_CANCELED})
BATCH_EVENT_TYPES: Final = frozenset({BATCH_COMPLETED})
EVENT_TYPES: Final = JOB_EVENT_TYPES | BATCH_EVENT_TYPES | {WEBHOOK_TEST}

EVENT_FOR_STATUS: Final[Mapping[str, str]] = {
    JobStatus.SUCCEEDED: SUMMARY_SUCCEEDED,
    JobStatus.FAILED: SUMMARY_FAILED,
    JobStatus.CANCELED: SUMMARY_CANCELED,
}

_DELIVERIES = deliveries_table


class Notifiable(Protocol):
    """What an event is about: a job or a batch (``JobRecord`` and ``BatchRecord`` both are).

    Read-only properties, so that frozen records satisfy it.
    """

    @property
    def id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def webhook_url(self) -> str | None: ...
    @property
    def webhook_secret(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...


def new_event_id() -> str:
    """The ``webhook-id`` of an event: unique, and the same on every attempt to deliver it."""
    return f"msg_{new_id().replace('-', '')}"


def _destinations(subject: Notifiable) -> list[tuple[str, str, str | None]]:
    found: list[tuple[str, str, str | None]] = []
    if subject.webhook_url:
        found.append((Channel.WEBHOOK.value, subject.webhook_url, subject.webhook_secret))
    if subject.email:
        found.append((Channel.EMAIL.value, subject.email, None))
    return found


def _record(
    conn: Connection, subject: Notifiable, event_type: str, *, job_id: str | None, batch_id: str | None
) -> list[str]:
    now = utcnow()
    values: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "tenant": subject.tenant,
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
        for channel, target, secret in _destinations(subject)
    ]
    if values:
        conn.execute(insert(_DELIVERIES), values)
    return [value["id"] for value in values]


def record_job_event(conn: Connection, subject: Notifiable, event_type: str) -> list[str]:
    """Record ``event_type`` for a job on ``conn``'s open transaction; return the delivery ids.

    A job with neither a webhook nor an email records nothing. The caller commits, then may
    nudge the notifier with each id.
    """
    if event_type not in JOB_EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a job event type")
    return _record(conn, subject, event_type, job_id=subject.id, batch_id=None)


def record_batch_event(conn: Connection, subject: Notifiable, event_type: str = BATCH_COMPLETED) -> list[str]:
    """Record ``event_type`` for a batch on ``conn``'s open transaction; return the delivery ids."""
    if event_type not in BATCH_EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a batch event type")
    return _record(conn, subject, event_type, job_id=None, batch_id=subject.id)


@dataclass(frozen=True)
class _Endpoint:
    """A webhook destination on its own, as a :class:`Notifiable` that names no job or batch."""

    id: str
    tenant: str
    webhook_url: str | None
    webhook_secret: str | None
    email: str | None = None


def record_test_event(conn: Connection, *, tenant: str, url: str, secret: str) -> str:
    """Record a ``webhook.test`` event to ``url`` on ``conn``'s open transaction; return the delivery id.

    It is delivered, retried and logged like any other event, so a test proves the same path.
    """
    endpoint = _Endpoint(id="", tenant=tenant, webhook_url=url, webhook_secret=secret)
    (delivery_id,) = _record(conn, endpoint, WEBHOOK_TEST, job_id=None, batch_id=None)
    return delivery_id
