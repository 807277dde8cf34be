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
        self._progress_at: dict[str, float] = {}
        self._cancel_checked: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

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

    def _on_progress(self, claimed: Sequence[_Claimed]) -> Callable[[int, int, int], None]:
        def report(index: int, done: int, total: int) -> None:
            job_id = claimed[index].id
            now = time.monotonic()
            with self._lock:
                if done < total and now - self._progress_at.get(job_id, 0.0) < _PROGRESS_EVERY_S:
                    return
                self._progress_at[job_id] = now
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        update(_JOBS)
                        .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
                        .values(progress_done=done, progress_total=total, updated_at=utcnow())
                    )
            except DBAPIError as exc:
                # Progress is advisory; the final result is what must not be lost.
                log.warning("could not record progress of %s: %s", job_id, exc, extra={"job_id": job_id})

        return report

    def _should_cancel(self, claimed: Sequence[_Claimed]) -> Callable[[int], bool]:
        def check(index: int) -> bool:
            job_id = claimed[index].id
            now = time.monotonic()
            cached = self._cancel_checked.get(job_id)
            if cached is not None and now - cached[0] < _CANCEL_CHECK_EVERY_S:
                return cached[1]
            try:
                with self.engine.connect() as conn:
                    flag = bool(
                        conn.execute(select(_JOBS.c.cancel_requested).where(_JOBS.c.id == job_id)).scalar()
                    )
            except DBAPIError:
                flag = False
            self._cancel_checked[job_id] = (now, flag)
            return flag

        return check

    def _summarize(self, claimed: Sequence[_Claimed]) -> list[SummaryResult | SummarizerError]:
        """Summarize, halving the batch on out-of-memory until a single document fails alone."""
        try:
            return list(
                self.summarizer.summarize_batch(
                    [job.text for job in claimed],
                    [job.params for job in claimed],
                    on_progress=self._on_progress(claimed),
                    should_cancel=self._should_cancel(claimed),
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
        for job in claimed:
            self._progress_at.pop(job.id, None)
            self._cancel_checked.pop(job.id, None)
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
