"""Running a batch of jobs: claim, summarize, store. Nothing here knows about Kafka.

The database row decides what happens: a job already final is skipped, so a redelivered message
is harmless; a job claimed too often is failed instead of crashing its worker again (a poison
document never blocks its partition); results are written with a guarded UPDATE so that two
workers racing on one job store exactly one result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import DBAPIError

from schema.jobs import Finished, complete_batch_if_done, finish_job
from schema.models import JobStatus, jobs_table, utcnow
from schema.settings import RetryStrategySettings
from summarizer import Summarizer, SummaryParams, SummaryResult
from summarizer.errors import OutOfMemory, SummarizerError
from workers.errors import StorageUnavailable
from workers.retry import RetryStrategy

log = logging.getLogger(__name__)

_JOBS = jobs_table
_OPEN = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_PROGRESS_EVERY_S = 0.5
_CANCEL_CHECK_EVERY_S = 1.0


@dataclass
class BatchOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    delivery_ids: list[str] = field(default_factory=list)
    failure_codes: list[str] = field(default_factory=list)
    batches_touched: set[str] = field(default_factory=set)
    batches_completed: list[str] = field(default_factory=list)
    documents: int = 0
    tokens: int = 0
    inference_s: float = 0.0
    queue_wait_s: list[float] = field(default_factory=list)


class _BatchMonitor:
    """Progress and cancel flags for one running batch, with one database round trip per period.

    Reports are kept in memory and written together at most every ``_PROGRESS_EVERY_S``; the cancel
    flags of the whole batch are read in one query at most every ``_CANCEL_CHECK_EVERY_S``. Per-job
    writes and reads cost the pipeline a measurable share of its throughput on PostgreSQL.
    """

    def __init__(self, engine: Engine, job_ids: Sequence[str]) -> None:
        self.engine = engine
        self.job_ids = list(job_ids)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, int]] = {}
        self._flushed_at = time.monotonic()
        self._canceled: set[str] = set()
        self._checked_at = float("-inf")

    def report(self, index: int, done: int, total: int) -> None:
        with self._lock:
            self._pending[self.job_ids[index]] = (done, total)
            if time.monotonic() - self._flushed_at < _PROGRESS_EVERY_S:
                return
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                for job_id, (job_done, job_total) in pending.items():
                    conn.execute(
                        update(_JOBS)
                        .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
                        .values(progress_done=job_done, progress_total=job_total, updated_at=now)
                    )
        except DBAPIError as exc:
            # Progress is advisory; the final result is what must not be lost.
            log.warning("could not record progress of %d jobs: %s", len(pending), exc)

    def should_cancel(self, index: int) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= _CANCEL_CHECK_EVERY_S:
            self._checked_at = now
            try:
                with self.engine.connect() as conn:
                    self._canceled = set(
                        conn.execute(
                            select(_JOBS.c.id).where(_JOBS.c.id.in_(self.job_ids), _JOBS.c.cancel_requested)
                        ).scalars()
                    )
            except DBAPIError as exc:
                log.warning("could not read cancel requests: %s", exc)
        return self.job_ids[index] in self._canceled


@dataclass
class _Claimed:
    id: str
    text: str
    params: SummaryParams
    created_at: Any


class JobExecutor:
    def __init__(
        self,
        engine: Engine,
        summarizer: Summarizer,
        *,
        retry: RetryStrategySettings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.summarizer = summarizer
        self.retry = RetryStrategy.from_settings(retry)
        self._sleep = sleep

    # -- claiming ---------------------------------------------------------------------------

    def claim(self, job_ids: Sequence[str], outcome: BatchOutcome) -> list[_Claimed]:
        """Mark runnable jobs running; fail poison jobs and finish canceled ones on the way."""
        unique = list(dict.fromkeys(job_ids))
        with self.engine.begin() as conn:
            rows = {
                row["id"]: row
                for row in conn.execute(select(_JOBS).where(_JOBS.c.id.in_(unique))).mappings().all()
            }
            claimed: list[_Claimed] = []
            for job_id in unique:
                row = rows.get(job_id)
                if row is None or row["status"] not in _OPEN:
                    outcome.skipped.append(job_id)
                    continue
                if row["cancel_requested"]:
                    self._finish(
                        conn, outcome, job_id, JobStatus.CANCELED, "canceled", "canceled by the client"
                    )
                    continue
                if row["attempts"] >= self.retry.max_attempts:
                    self._finish(
                        conn,
                        outcome,
                        job_id,
                        JobStatus.FAILED,
                        "max_attempts_exceeded",
                        f"gave up after {row['attempts']} attempts",
                    )
                    continue
                try:
                    params = self.summarizer.validate_params(row["params"] or {})
                except SummarizerError as exc:
                    self._finish(conn, outcome, job_id, JobStatus.FAILED, exc.code, exc.message)
                    continue
                now = utcnow()
                result = conn.execute(
                    update(_JOBS)
                    .where(_JOBS.c.id == job_id, _JOBS.c.status.in_(_OPEN))
                    .values(
                        status=JobStatus.RUNNING.value,
                        attempts=_JOBS.c.attempts + 1,
                        started_at=row["started_at"] or now,
                        updated_at=now,
                    )
                )
                if result.rowcount:
                    claimed.append(_Claimed(job_id, row["input_text"], params, row["created_at"]))
            self._close_batches(conn, outcome)
        return claimed

    # -- running ----------------------------------------------------------------------------

    def _monitor(self, claimed: Sequence[_Claimed]) -> _BatchMonitor:
        return _BatchMonitor(self.engine, [job.id for job in claimed])

    def _summarize(self, claimed: Sequence[_Claimed]) -> list[SummaryResult | SummarizerError]:
        """Summarize, halving the batch on out-of-memory until a single document fails alone."""
        monitor = self._monitor(claimed)
        try:
            return list(
                self.summarizer.summarize_batch(
                    [job.text for job in claimed],
                    [job.params for job in claimed],
                    on_progress=monitor.report,
                    should_cancel=monitor.should_cancel,
                )
            )
        except OutOfMemory as exc:
            if len(claimed) == 1:
                return [exc]
            middle = len(claimed) // 2
            log.warning(
                "out of memory on a batch of %d; retrying as %d + %d",
                len(claimed),
                middle,
                len(claimed) - middle,
            )
            return self._summarize(claimed[:middle]) + self._summarize(claimed[middle:])

    def run(self, job_ids: Sequence[str]) -> BatchOutcome:
        outcome = BatchOutcome()
        claimed = self.claim(job_ids, outcome)
        if not claimed:
            return outcome
        now = utcnow()
        outcome.queue_wait_s = [max(0.0, (now - job.created_at).total_seconds()) for job in claimed]
        began = time.perf_counter()
        results: list[SummaryResult | SummarizerError | None] = [None] * len(claimed)
        pending = list(range(len(claimed)))
        for attempt in self.retry.attempts():
            try:
                batch = self._summarize([claimed[i] for i in pending])
            except SummarizerError as exc:
                batch = [exc] * len(pending)
            retry_next = []
            for index, result in zip(pending, batch, strict=True):
                results[index] = result
                # A retryable error (a device hiccup) gets another try; the rest of the batch is done.
                if isinstance(result, SummarizerError) and result.retryable and not attempt.is_last:
                    retry_next.append(index)
            if not retry_next:
                break
            for index in retry_next:
                failure = results[index]
                log.warning(
                    "job %s failed with a retryable error (%s); retrying in %.1fs",
                    claimed[index].id,
                    failure.code if isinstance(failure, SummarizerError) else "?",
                    attempt.delay_s,
                    extra={"job_id": claimed[index].id},
                )
            self._sleep(attempt.delay_s)
            pending = retry_next
        outcome.inference_s = time.perf_counter() - began
        outcome.documents = len(claimed)
        outcome.tokens = sum(r.input_tokens for r in results if isinstance(r, SummaryResult))
        self._store(claimed, [r for r in results if r is not None], outcome)
        return outcome

    # -- storing ----------------------------------------------------------------------------

    def _finish(
        self,
        conn: Any,
        outcome: BatchOutcome,
        job_id: str,
        status: JobStatus,
        code: str | None,
        message: str | None,
        **fields: Any,
    ) -> Finished | None:
        finished = finish_job(
            conn, job_id, status, from_statuses=_OPEN, error_code=code, error_message=message, **fields
        )
        if finished is None:
            outcome.skipped.append(job_id)
            return None
        {
            JobStatus.SUCCEEDED: outcome.succeeded,
            JobStatus.FAILED: outcome.failed,
            JobStatus.CANCELED: outcome.canceled,
        }[status].append(job_id)
        outcome.delivery_ids.extend(finished.delivery_ids)
        if status is JobStatus.FAILED and code:
            outcome.failure_codes.append(code)
        if finished.row["batch_id"]:
            outcome.batches_touched.add(finished.row["batch_id"])
        row = finished.row
        seconds = (row["finished_at"] - row["created_at"]).total_seconds()
        # The one line per job operators search for; ids and codes only, never text or messages.
        log.info(
            "job %s %s%s, %.2f s after submission",
            job_id,
            status.value,
            f" ({code})" if code and status is JobStatus.FAILED else "",
            seconds,
            extra={
                "job_id": job_id,
                "tenant": row["tenant"],
                "batch_id": row["batch_id"],
                "status": status.value,
                "error_code": code,
                "duration_s": round(seconds, 3),
            },
        )
        return finished

    @staticmethod
    def _close_batches(conn: Any, outcome: BatchOutcome) -> None:
        for batch_id in sorted(outcome.batches_touched):
            completed = complete_batch_if_done(conn, batch_id)
            if completed is not None:
                outcome.batches_completed.append(batch_id)
                outcome.delivery_ids.extend(completed.delivery_ids)

    def _store(
        self,
        claimed: Sequence[_Claimed],
        results: Sequence[SummaryResult | SummarizerError],
        outcome: BatchOutcome,
    ) -> None:
        for attempt in self.retry.attempts(forever=True):
            staged = BatchOutcome()
            try:
                with self.engine.begin() as conn:
                    for job, result in zip(claimed, results, strict=True):
                        if isinstance(result, SummaryResult):
                            self._finish(
                                conn,
                                staged,
                                job.id,
                                JobStatus.SUCCEEDED,
                                None,
                                None,
                                summary=result.summary,
                                model=result.model.as_dict(),
                                timings=result.timings,
                                input_tokens=result.input_tokens,
                                progress_done=result.chunks,
                                progress_total=result.chunks,
                            )
                        elif result.code == "canceled":
                            self._finish(conn, staged, job.id, JobStatus.CANCELED, "canceled", result.message)
                        else:
                            self._finish(conn, staged, job.id, JobStatus.FAILED, result.code, result.message)
                    self._close_batches(conn, staged)
            except DBAPIError as exc:
                if attempt.number >= 50:
                    raise StorageUnavailable(f"could not store results: {exc}") from exc
                log.warning("storing results failed (%s); retrying in %.1fs", exc, attempt.delay_s)
                self._sleep(attempt.delay_s)
                continue
            outcome.succeeded += staged.succeeded
            outcome.failed += staged.failed
            outcome.canceled += staged.canceled
            outcome.skipped += staged.skipped
            outcome.delivery_ids += staged.delivery_ids
            outcome.batches_completed += staged.batches_completed
            outcome.failure_codes += staged.failure_codes
            return
