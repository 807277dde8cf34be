"""Every write of a summary job, and the reads the API needs: insert, claim, finish, fail, cancel,
retry.

A transition is a guarded UPDATE (``WHERE status IN (...)``): a redelivered Kafka message, a cancel
racing a worker, two workers on one job — only one UPDATE changes the row, and a final status is
never left. A transition into a final status records its notification event in the same
transaction, so a job never ends without its notification on record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from schema.models import FINAL_STATUSES, JobStatus, Lane, Route, jobs_table, new_id, outbox_table, utcnow
from schema.store import usage
from schema.store.errors import JobFinishedError, NotFoundError
from schema.store.events import EVENT_FOR_STATUS, record_job_event
from schema.store.records import JobRecord

OPEN_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
FINAL_VALUES = tuple(status.value for status in FINAL_STATUSES)
_JOBS = jobs_table
_OUTBOX = outbox_table


@dataclass(frozen=True)
class Finished:
    """A job (or batch) that this transaction moved to a final status, and the deliveries it owes."""

    job: JobRecord
    delivery_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Claimed:
    """What one claim found: jobs now running for the caller, jobs it ended on the way, and ids
    it left alone (already final, unknown, or waiting for their retry time)."""

    running: list[JobRecord]
    ended: list[Finished]
    skipped: list[str]


@dataclass(frozen=True)
class Outcome:
    """The result of one job, as the worker hands it to :func:`store_outcome`."""

    status: JobStatus
    summary: str | None = None
    language: str | None = None
    model: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    input_tokens: int | None = None
    chunks: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    # Output tokens when the engine knows them; the summary's words otherwise.
    output_units: int | None = None
    # Reused from another job's result (the cache, or a duplicate in the same batch).
    cache_hit_of: str | None = None
    similarity: float | None = None


def new_job(*, tenant: str, text: str, **columns: Any) -> JobRecord:
    """A fresh queued async job; ``columns`` override any field."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant": tenant,
        "status": JobStatus.QUEUED.value,
        "route": Route.ASYNC.value,
        "lane": Lane.INTERACTIVE.value,
        "input_text": text,
        "input_tokens": 0,
        "params": {},
        "summary": None,
        "language": None,
        "variant": None,
        "error_code": None,
        "error_message": None,
        "attempts": 0,
        "retries": 0,
        "retry_at": None,
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
        "pii_mode": None,
        "cached": False,
        "cache_hit_of": None,
        "similarity": None,
    }
    unknown = set(columns) - set(values)
    if unknown:
        raise TypeError(f"unknown job columns: {sorted(unknown)}")
    values.update(columns)
    return JobRecord(**values)


def insert_jobs(
    conn: Connection,
    jobs: Sequence[JobRecord],
    *,
    topic_for: Mapping[str, str],
    output_units: Mapping[str, int] | None = None,
) -> list[str]:
    """Insert new jobs; queued ones get an outbox row on their lane's topic (``topic_for[lane]``).

    A job inserted already final (answered on the sync path, or from the result cache) records its
    event and its usage here (``output_units`` by job id, when known better than by words). Returns the
    delivery ids created. Raises IntegrityError on a duplicate idempotency key; the caller's
    transaction then rolls back whole.
    """
    if not jobs:
        return []
    conn.execute(insert(_JOBS), [job.as_row() for job in jobs])
    outbox = [
        {"job_id": job.id, "topic": topic_for[job.lane]}
        for job in jobs
        if job.status == JobStatus.QUEUED.value
    ]
    if outbox:
        conn.execute(insert(_OUTBOX), outbox)
    delivery_ids: list[str] = []
    for job in jobs:
        if job.status in FINAL_VALUES and (job.webhook_url or job.email):
            delivery_ids += record_job_event(conn, job, EVENT_FOR_STATUS[JobStatus(job.status)])
    usage.record(
        conn,
        [
            (job, usage.of_job(job, output=(output_units or {}).get(job.id)))
            for job in jobs
            if job.status in FINAL_VALUES
        ],
    )
    return delivery_ids


# -- reads ------------------------------------------------------------------------------------


# Every column but the document itself (up to megabytes), for reads that never show it.
WITHOUT_TEXT = [column for column in _JOBS.c if column.name != "input_text"]


def from_row_without_text(row: Mapping[Any, Any]) -> JobRecord:
    """A record of a row read with :data:`WITHOUT_TEXT`: its ``input_text`` is empty."""
    return JobRecord.from_row({**row, "input_text": ""})


def get(conn: Connection, job_id: str, *, tenant: str | None = None, with_text: bool = True) -> JobRecord:
    """The job; NotFoundError when it does not exist or belongs to another tenant.

    ``with_text=False`` leaves the document out (``input_text`` is then empty): what polls a job
    many times a second for its status need not read megabytes each time.
    """
    query = (select(_JOBS) if with_text else select(*WITHOUT_TEXT)).where(_JOBS.c.id == job_id)
    if tenant is not None:
        query = query.where(_JOBS.c.tenant == tenant)
    row = conn.execute(query).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"no summary job with id {job_id}")
    return JobRecord.from_row(row) if with_text else from_row_without_text(row)


def find_by_idempotency_key(conn: Connection, tenant: str, key: str) -> JobRecord | None:
    row = (
        conn.execute(select(_JOBS).where(_JOBS.c.tenant == tenant, _JOBS.c.idempotency_key == key))
        .mappings()
        .one_or_none()
    )
    return JobRecord.from_row(row) if row is not None else None


def list_page(
    conn: Connection, tenant: str, *, status: str | None, before_id: str | None, limit: int
) -> list[JobRecord]:
    """Up to ``limit`` jobs of a tenant, newest first, older than ``before_id`` when given."""
    query = select(_JOBS).where(_JOBS.c.tenant == tenant)
    if status is not None:
        query = query.where(_JOBS.c.status == status)
    if before_id is not None:
        query = query.where(_JOBS.c.id < before_id)
    rows = conn.execute(query.order_by(_JOBS.c.id.desc()).limit(limit)).mappings().all()
    return [JobRecord.from_row(row) for row in rows]


def cancel_requested(conn: Connection, job_ids: Sequence[str]) -> set[str]:
    """Which of these jobs a client asked to cancel."""
    return set(
        conn.execute(
            select(_JOBS.c.id).where(_JOBS.c.id.in_(list(job_ids)), _JOBS.c.cancel_requested)
        ).scalars()
    )


# -- transitions ------------------------------------------------------------------------------


def _to_final(
    conn: Connection,
    job_id: str,
    status: JobStatus,
    *,
    from_statuses: tuple[str, ...] = OPEN_STATUSES,
    output_units: int | None = None,
    **values: Any,
) -> Finished | None:
    now = utcnow()
    result = conn.execute(
        update(_JOBS)
        .where(_JOBS.c.id == job_id, _JOBS.c.status.in_(from_statuses))
        .values(status=status.value, finished_at=now, updated_at=now, retry_at=None, **values)
    )
    if result.rowcount == 0:
        return None
    job = get(conn, job_id)
    usage.record(conn, [(job, usage.of_job(job, output=output_units))])
    return Finished(job, record_job_event(conn, job, EVENT_FOR_STATUS[status]))


def finish(conn: Connection, job_id: str, outcome: Outcome) -> Finished | None:
    """Store a job's final outcome; None when it had already ended (nothing changes then)."""
    if outcome.status not in FINAL_STATUSES:
        raise ValueError(f"{outcome.status} is not a final status")
    values: dict[str, Any] = {"error_code": outcome.error_code, "error_message": outcome.error_message}
    if outcome.status is JobStatus.SUCCEEDED:
        values.update(
            summary=outcome.summary,
            language=outcome.language,
            model=outcome.model,
            timings=outcome.timings,
            input_tokens=outcome.input_tokens or 0,
            progress_done=outcome.chunks or 0,
            progress_total=outcome.chunks or 0,
        )
        if outcome.cache_hit_of is not None:
            values.update(cached=True, cache_hit_of=outcome.cache_hit_of, similarity=outcome.similarity)
    return _to_final(conn, job_id, outcome.status, output_units=outcome.output_units, **values)


def fail(conn: Connection, job_id: str, code: str, message: str) -> Finished | None:
    return finish(conn, job_id, Outcome(JobStatus.FAILED, error_code=code, error_message=message))


def cancel(conn: Connection, job_id: str, *, tenant: str | None = None) -> JobRecord:
    """Cancel for a client: a queued job ends now; a running one is flagged, and its worker stops
    at the next chunk boundary. JobFinishedError when it already succeeded or failed."""
    job = get(conn, job_id, tenant=tenant)
    if job.is_final:
        raise JobFinishedError(f"job {job_id} already {job.status}")
    if job.status == JobStatus.QUEUED.value:
        ended = _to_final(
            conn,
            job_id,
            JobStatus.CANCELED,
            from_statuses=(JobStatus.QUEUED.value,),
            error_code="canceled",
            error_message="canceled by the client",
        )
        if ended is not None:
            return ended.job
    conn.execute(
        update(_JOBS)
        .where(_JOBS.c.id == job_id, _JOBS.c.status.in_(OPEN_STATUSES))
        .values(cancel_requested=True, updated_at=utcnow())
    )
    job = get(conn, job_id)
    if job.is_final and job.status != JobStatus.CANCELED.value:
        raise JobFinishedError(f"job {job_id} already {job.status}")
    return job


def claim(
    conn: Connection, job_ids: Iterable[str], *, max_claims: int, now: datetime | None = None
) -> Claimed:
    """Mark runnable jobs running for the caller.

    On the way, a job whose cancel was requested is canceled, and a job claimed ``max_claims``
    times without an outcome (its workers died on it: a poison document) is failed, so it never
    blocks its partition again. Jobs waiting for a later retry time are skipped: their outbox row
    brings them back when it is due.
    """
    moment = now or utcnow()
    unique = list(dict.fromkeys(job_ids))
    rows = {
        row["id"]: JobRecord.from_row(row)
        for row in conn.execute(select(_JOBS).where(_JOBS.c.id.in_(unique))).mappings().all()
    }
    running: list[JobRecord] = []
    ended: list[Finished] = []
    skipped: list[str] = []
    for job_id in unique:
        job = rows.get(job_id)
        if (
            job is None
            or job.status not in OPEN_STATUSES
            or (job.retry_at is not None and job.retry_at > moment)
        ):
            skipped.append(job_id)
            continue
        finished: Finished | None
        if job.cancel_requested:
            finished = _to_final(
                conn,
                job_id,
                JobStatus.CANCELED,
                error_code="canceled",
                error_message="canceled by the client",
            )
        elif job.attempts - job.retries >= max_claims:
            finished = fail(
                conn,
                job_id,
                "max_attempts_exceeded",
                f"gave up after {job.attempts - job.retries} claims that never ended (a worker died each time)",
            )
        else:
            result = conn.execute(
                update(_JOBS)
                .where(_JOBS.c.id == job_id, _JOBS.c.status.in_(OPEN_STATUSES))
                .values(
                    status=JobStatus.RUNNING.value,
                    attempts=_JOBS.c.attempts + 1,
                    retry_at=None,
                    started_at=job.started_at or moment,
                    updated_at=moment,
                )
            )
            if result.rowcount:
                running.append(get(conn, job_id))
            else:
                skipped.append(job_id)
            continue
        if finished is None:
            skipped.append(job_id)
        else:
            ended.append(finished)
    return Claimed(running, ended, skipped)


def retry(
    conn: Connection, job_id: str, *, retry_at: datetime, topic: str, error_code: str, error_message: str
) -> bool:
    """Put a running job back in the queue until ``retry_at`` after a retryable failure.

    The retry is data, not a sleep: the job row says when, and an outbox row that the relay
    publishes only from ``retry_at`` brings it back to a worker. False when the job was no longer
    running (canceled or finished by someone else meanwhile).
    """
    now = utcnow()
    result = conn.execute(
        update(_JOBS)
        .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
        .values(
            status=JobStatus.QUEUED.value,
            retries=_JOBS.c.retries + 1,
            retry_at=retry_at,
            error_code=error_code,
            error_message=error_message,
            updated_at=now,
        )
    )
    if result.rowcount == 0:
        return False
    conn.execute(insert(_OUTBOX).values(job_id=job_id, topic=topic, created_at=now, available_at=retry_at))
    return True


def record_progress(conn: Connection, progress: Mapping[str, tuple[int, int]]) -> None:
    """Chunks done and total per running job; also proves the worker is alive (``updated_at``)."""
    now = utcnow()
    for job_id, (done, total) in progress.items():
        conn.execute(
            update(_JOBS)
            .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
            .values(progress_done=done, progress_total=total, updated_at=now)
        )


def heartbeat(conn: Connection, job_ids: Sequence[str]) -> int:
    """Mark running jobs as alive, so the relay's sweeper does not take them for abandoned while a
    worker is busy with them (a long document can prepare for minutes before its first chunk)."""
    if not job_ids:
        return 0
    result = conn.execute(
        update(_JOBS)
        .where(_JOBS.c.id.in_(list(job_ids)), _JOBS.c.status == JobStatus.RUNNING.value)
        .values(updated_at=utcnow())
    )
    return int(result.rowcount)
