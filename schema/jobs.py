"""Job state changes that more than one component makes (the gateway cancels, workers finish).

Every change is a guarded UPDATE (``WHERE status IN (...)``) so that concurrent actors — a
redelivered Kafka message, a cancel racing a worker — can never move a job out of a final state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, update

from schema.events import BATCH_COMPLETED, EVENT_FOR_STATUS, record_batch_event, record_job_event
from schema.models import (
    FINAL_STATUSES,
    Batch,
    JobStatus,
    Lane,
    Route,
    SummaryJob,
    batches_table,
    jobs_table,
    new_id,
    utcnow,
)

OPEN_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class Finished:
    row: Mapping[str, Any]
    delivery_ids: list[str] = field(default_factory=list)


def new_job_row(*, tenant: str, text: str, **columns: Any) -> dict[str, Any]:
    """Every column of a fresh queued async job, for Core INSERTs (group commit, batch uploads).

    Executemany needs the same keys in every row, so each column is present; ``columns`` overrides.
    """
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "tenant": tenant,
        "status": JobStatus.QUEUED.value,
        "route": Route.ASYNC.value,
        "lane": Lane.INTERACTIVE.value,
        "input_text": text,
        "input_tokens": 0,
        "params": {},
        "summary": None,
        "error_code": None,
        "error_message": None,
        "attempts": 0,
        "progress_done": 0,
        "progress_total": 0,
        "model": None,
        "timings": None,
        "metadata": {},
        "idempotency_key": None,
        "request_hash": None,
        "webhook_url": None,
        "webhook_secret": None,
        "email": None,
        "batch_id": None,
        "custom_id": None,
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
    }
    row.update(columns)
    return row


def finish_job(
    conn: Connection,
    job_id: str,
    status: JobStatus,
    *,
    from_statuses: tuple[str, ...] = OPEN_STATUSES,
    **fields: Any,
) -> Finished | None:
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
    row = conn.execute(select(jobs_table).where(SummaryJob.id == job_id)).mappings().one()
    delivery_ids = record_job_event(conn, row, EVENT_FOR_STATUS[status])
    return Finished(row=dict(row), delivery_ids=list(delivery_ids or []))


class BatchStatus:
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"


def batch_counts(conn: Connection, batch_id: str) -> dict[str, int]:
    rows = conn.execute(
        select(SummaryJob.status, func.count())
        .where(SummaryJob.batch_id == batch_id)
        .group_by(SummaryJob.status)
    ).all()
    counts = {status.value: 0 for status in JobStatus}
    for status, count in rows:
        counts[status] = count
    counts["total"] = sum(counts.values())
    return counts


def complete_batch_if_done(conn: Connection, batch_id: str) -> Finished | None:
    """Close a batch whose documents have all ended, and record ``batch.completed`` once.

    Called by whoever finished the last documents; the guarded UPDATE makes the event fire once
    even when two workers finish a batch's last documents at the same moment.
    """
    open_jobs = conn.execute(
        select(func.count()).where(SummaryJob.batch_id == batch_id, SummaryJob.status.in_(OPEN_STATUSES))
    ).scalar_one()
    if open_jobs:
        return None
    batch = conn.execute(select(batches_table).where(Batch.id == batch_id)).mappings().one_or_none()
    if batch is None or batch["status"] != BatchStatus.IN_PROGRESS:
        return None
    final_status = BatchStatus.CANCELED if batch["cancel_requested"] else BatchStatus.COMPLETED
    result = conn.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.IN_PROGRESS)
        .values(status=final_status, finished_at=utcnow())
    )
    if result.rowcount == 0:
        return None
    row = conn.execute(select(batches_table).where(Batch.id == batch_id)).mappings().one()
    delivery_ids = record_batch_event(conn, row, BATCH_COMPLETED)
    return Finished(row=dict(row), delivery_ids=list(delivery_ids))
