"""Batch uploads: created with all their jobs in one transaction, closed once when the last ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from schema.models import JobStatus, batches_table, jobs_table, new_id, usage_table, utcnow
from schema.store.errors import BatchFinishedError, NotFoundError
from schema.store.events import BATCH_COMPLETED, record_batch_event
from schema.store.jobs import FINAL_VALUES, OPEN_STATUSES, WITHOUT_TEXT, from_row_without_text, insert_jobs
from schema.store.records import BatchCounts, BatchRecord, JobRecord
from schema.store.usage import Usage

_JOBS = jobs_table
_BATCHES = batches_table
_USAGE = usage_table
_INSERT_CHUNK = 1_000


class BatchStatus:
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class BatchClosed:
    batch: BatchRecord
    delivery_ids: list[str]


@dataclass(frozen=True)
class BatchResult:
    """One ended document of a batch, as the results stream shows it."""

    job_id: str
    custom_id: str | None
    status: str
    summary: str | None
    error_code: str | None
    error_message: str | None
    variant: str | None = None
    # The LoRA adapter its summary came from (params.adapter of an instruct model), else None.
    adapter: str | None = None
    # What the document cost (None before migration 0006's usage rows existed for it).
    usage: dict[str, Any] | None = None


def new_batch(*, tenant: str, total: int, **columns: Any) -> BatchRecord:
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant": tenant,
        "status": BatchStatus.IN_PROGRESS,
        "total": total,
        "params": {},
        "metadata": {},
        "webhook_url": None,
        "webhook_secret": None,
        "email": None,
        "cancel_requested": False,
        "created_at": utcnow(),
        "finished_at": None,
    }
    values.update(columns)
    return BatchRecord(**values)


def create(
    conn: Connection, batch: BatchRecord, jobs: Sequence[JobRecord], *, topic_for: Mapping[str, str]
) -> None:
    """The batch and every one of its jobs (with outbox rows), or nothing."""
    conn.execute(_BATCHES.insert(), [batch.as_row()])
    for start in range(0, len(jobs), _INSERT_CHUNK):
        insert_jobs(conn, jobs[start : start + _INSERT_CHUNK], topic_for=topic_for)


def get(conn: Connection, batch_id: str, *, tenant: str | None = None) -> BatchRecord:
    query = select(_BATCHES).where(_BATCHES.c.id == batch_id)
    if tenant is not None:
        query = query.where(_BATCHES.c.tenant == tenant)
    row = conn.execute(query).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"no batch with id {batch_id}")
    return BatchRecord.from_row(row)


def counts(conn: Connection, batch_id: str) -> BatchCounts:
    rows = conn.execute(
        select(_JOBS.c.status, func.count()).where(_JOBS.c.batch_id == batch_id).group_by(_JOBS.c.status)
    ).all()
    return BatchCounts(**{str(status): int(count) for status, count in rows})


def list_page(
    conn: Connection, tenant: str, *, before_id: str | None, limit: int
) -> list[tuple[BatchRecord, BatchCounts]]:
    query = select(_BATCHES).where(_BATCHES.c.tenant == tenant)
    if before_id is not None:
        query = query.where(_BATCHES.c.id < before_id)
    rows = conn.execute(query.order_by(_BATCHES.c.id.desc()).limit(limit)).mappings().all()
    return [(BatchRecord.from_row(row), counts(conn, row["id"])) for row in rows]


def results_page(conn: Connection, batch_id: str, *, after_id: str, limit: int) -> list[BatchResult]:
    """Ended documents of a batch in id order, after ``after_id`` (``""`` for the first page)."""
    rows = conn.execute(
        select(
            _JOBS.c.id,
            _JOBS.c.custom_id,
            _JOBS.c.status,
            _JOBS.c.summary,
            _JOBS.c.error_code,
            _JOBS.c.error_message,
            _JOBS.c.variant,
            _JOBS.c.model,
            _JOBS.c.cache_hit_of,
            _USAGE.c.input_tokens,
            _USAGE.c.output_units,
            _USAGE.c.chunks,
            _USAGE.c.engine_s,
            _USAGE.c.cached,
        )
        .select_from(_JOBS.outerjoin(_USAGE, _USAGE.c.job_id == _JOBS.c.id))
        .where(_JOBS.c.batch_id == batch_id, _JOBS.c.id > after_id, _JOBS.c.status.in_(FINAL_VALUES))
        .order_by(_JOBS.c.id)
        .limit(limit)
    ).all()
    found: list[BatchResult] = []
    for row in rows:
        used = None
        if row.input_tokens is not None:
            used = Usage(row.input_tokens, row.output_units, row.chunks, row.engine_s, row.cached).as_dict()
            used["cache_hit_of"] = row.cache_hit_of
        adapter = row.model.get("adapter") if isinstance(row.model, dict) else None
        found.append(BatchResult(*row[:7], adapter=adapter, usage=used))
    return found


def finished_after(
    conn: Connection,
    batch_id: str,
    *,
    after: tuple[datetime, str] | None,
    finished_before: datetime | None,
    limit: int,
) -> list[JobRecord]:
    """Ended documents of a batch in (finished_at, id) order, after the position ``after``, without
    their text (``input_text`` is empty).

    ``finished_before`` leaves out documents that ended at or after it: a document is only
    handed out once every transaction that might still commit an earlier one has had time to.
    """
    query = select(*WITHOUT_TEXT).where(_JOBS.c.batch_id == batch_id, _JOBS.c.status.in_(FINAL_VALUES))
    if after is not None:
        moment, job_id = after
        query = query.where(
            or_(
                _JOBS.c.finished_at > moment,
                and_(_JOBS.c.finished_at == moment, _JOBS.c.id > job_id),
            )
        )
    if finished_before is not None:
        query = query.where(_JOBS.c.finished_at < finished_before)
    rows = conn.execute(query.order_by(_JOBS.c.finished_at, _JOBS.c.id).limit(limit)).mappings().all()
    return [from_row_without_text(row) for row in rows]


def complete_if_done(conn: Connection, batch_id: str) -> BatchClosed | None:
    """Close a batch whose documents have all ended, and record ``batch.completed`` once.

    Called by whoever ended the last documents; the guarded UPDATE makes the event fire once even
    when two workers end a batch's last documents at the same moment.
    """
    open_jobs = conn.execute(
        select(func.count()).where(_JOBS.c.batch_id == batch_id, _JOBS.c.status.in_(OPEN_STATUSES))
    ).scalar_one()
    if open_jobs:
        return None
    row = conn.execute(select(_BATCHES).where(_BATCHES.c.id == batch_id)).mappings().one_or_none()
    if row is None or row["status"] != BatchStatus.IN_PROGRESS:
        return None
    final_status = BatchStatus.CANCELED if row["cancel_requested"] else BatchStatus.COMPLETED
    result = conn.execute(
        update(_BATCHES)
        .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == BatchStatus.IN_PROGRESS)
        .values(status=final_status, finished_at=utcnow())
    )
    if result.rowcount == 0:
        return None
    batch = get(conn, batch_id)
    return BatchClosed(batch, record_batch_event(conn, batch, BATCH_COMPLETED))


def cancel(conn: Connection, batch_id: str, *, tenant: str) -> BatchRecord:
    """Queued documents end now; running ones finish, as the batch APIs users know do it."""
    batch = get(conn, batch_id, tenant=tenant)
    if batch.status != BatchStatus.IN_PROGRESS:
        raise BatchFinishedError(f"batch {batch_id} already {batch.status}")
    now = utcnow()
    conn.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id).values(cancel_requested=True))
    conn.execute(
        update(_JOBS)
        .where(_JOBS.c.batch_id == batch_id, _JOBS.c.status == JobStatus.QUEUED.value)
        .values(
            status=JobStatus.CANCELED.value,
            error_code="canceled",
            error_message="the batch was canceled",
            retry_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    complete_if_done(conn, batch_id)
    return get(conn, batch_id)
