"""Job state changes that more than one component makes (the gateway cancels, workers finish).

Every change is a guarded UPDATE (``WHERE status IN (...)``) so that concurrent actors — a
redelivered Kafka message, a cancel racing a worker — can never move a job out of a final state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from schema.models import FINAL_STATUSES, JobStatus, SummaryJob, utcnow

OPEN_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class FinishedJob:
    row: Mapping[str, Any]
    delivery_ids: list[str] = field(default_factory=list)


def finish_job(
    conn: Connection,
    job_id: str,
    status: JobStatus,
    *,
    from_statuses: tuple[str, ...] = OPEN_STATUSES,
    **fields: Any,
) -> FinishedJob | None:
    """Move a job to a final status and record its notification event in the same transaction.

    Returns the updated row and the notification deliveries it created, or None when the job had
    already left ``from_statuses`` (nothing changes then).
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status} is not a final status")
    now = utcnow()
    result = conn.execute(
        update(SummaryJob)
        .where(SummaryJob.id == job_id, SummaryJob.status.in_(from_statuses))
        .values(status=status.value, finished_at=now, updated_at=now, **fields)
    )
    if result.rowcount == 0:
        return None
    row = conn.execute(select(SummaryJob.__table__).where(SummaryJob.id == job_id)).mappings().one()
    from schema.events import EVENT_FOR_STATUS, record_job_event

    delivery_ids = record_job_event(conn, row, EVENT_FOR_STATUS[status])
    return FinishedJob(row=row, delivery_ids=list(delivery_ids or []))
