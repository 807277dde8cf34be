"""Job execution on a real database (SQLite and PostgreSQL), with the in-memory summarizer."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from schema.models import (
    NotificationDelivery,
    batches_table,
    jobs_table,
    new_id,
    outbox_table,
    utcnow,
)
from schema.store.batches import BatchStatus
from summarizer import Summarizer
from summarizer.errors import InvalidDocumentError, SummarizerUnavailableError
from summarizer.testing import FakeSummarizer
from tests.builders import job_values
from workers.execution import JobExecutor
from workers.retry import RetryPolicy

POLICY = RetryPolicy(max_claims=3, max_retries=2, base_delay_s=30.0, max_delay_s=60.0, jitter=False)
TOPICS = {"interactive": "jobs", "bulk": "jobs.bulk"}
HOOK = "https://hooks.example.org/condense"


def executor_for(engine: Engine, summarizer: Summarizer) -> JobExecutor:
    return JobExecutor(engine, summarizer, policy=POLICY, topic_for=TOPICS)


def add_job(engine: Engine, text: str, **fields: Any) -> str:
    values = job_values(input_text=text, **fields)
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [values])
    return str(values["id"])


def job(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).mappings().one())


def deliveries(engine: Engine, **where: str) -> int:
    query = select(func.count()).select_from(NotificationDelivery)
    for column, value in where.items():
        query = query.where(getattr(NotificationDelivery, column) == value)
    with engine.connect() as conn:
        count: int = conn.execute(query).scalar_one()
    return count


def test_batch_succeeds_and_redelivery_is_harmless(engine: Engine) -> None:
    ids = [
        add_job(engine, f"Document {i} has a first sentence. And a second one.", webhook_url=HOOK)
        for i in range(5)
    ]
    executor = executor_for(engine, FakeSummarizer())
    outcome = executor.run(ids)
    assert sorted(outcome.succeeded) == sorted(ids)
    assert len(outcome.delivery_ids) == 5
    for job_id in ids:
        row = job(engine, job_id)
        assert row["status"] == "succeeded"
        assert row["summary"].startswith("Document")
        assert row["model"]["name"] == "fake-extractive"
        assert row["language"] == "en"
        assert row["attempts"] == 1
        assert row["started_at"] <= row["finished_at"]
    again = executor.run(ids)
    assert sorted(again.skipped) == sorted(ids)
    assert again.succeeded == []
    assert deliveries(engine) == 5


def test_a_bad_document_fails_alone(engine: Engine) -> None:
    good = add_job(engine, "A fine document. With two sentences.")
    bad = add_job(engine, "POISON document.")
    summarizer = FakeSummarizer(failures={"POISON": InvalidDocumentError("cannot read this document")})
    outcome = executor_for(engine, summarizer).run([good, bad])
    assert outcome.succeeded == [good]
    assert outcome.failed == [bad]
    assert job(engine, bad)["error_code"] == "invalid_document"
    assert outcome.failure_codes == ["invalid_document"]


def test_a_job_claimed_too_often_is_failed_instead_of_retried(engine: Engine) -> None:
    poison = add_job(engine, "Crashes its worker every time.", attempts=3, status="running")
    outcome = executor_for(engine, FakeSummarizer()).run([poison])
    assert outcome.failed == [poison]
    assert job(engine, poison)["error_code"] == "max_attempts_exceeded"


def test_out_of_memory_halves_the_batch_until_it_fits(engine: Engine) -> None:
    ids = [add_job(engine, f"Document {i}. Text.") for i in range(7)]
    summarizer = FakeSummarizer(oom_over_docs=2)
    outcome = executor_for(engine, summarizer).run(ids)
    assert sorted(outcome.succeeded) == sorted(ids)
    # Every document was finally summarized once, in a call small enough to fit.
    fitting = [doc for call in summarizer.calls if len(call) <= 2 for doc in call]
    assert len(fitting) == len(ids)


def outbox_rows(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox_table).where(outbox_table.c.job_id == job_id)).mappings().all()
    return [dict(row) for row in rows]


def test_a_retryable_failure_is_stored_as_a_retry_time_not_slept_on(engine: Engine) -> None:
    job_id = add_job(engine, "FLAKY document. It works the second time.")
    summarizer = FakeSummarizer(failures={"FLAKY": SummarizerUnavailableError("device busy")}, fail_times=1)
    executor = executor_for(engine, summarizer)
    began = utcnow()
    outcome = executor.run([job_id])
    assert outcome.retried == [job_id]
    assert outcome.succeeded == outcome.failed == []
    row = job(engine, job_id)
    assert row["status"] == "queued"
    assert row["retries"] == 1
    assert row["error_code"] == "summarizer_unavailable"
    # base_delay_s without jitter: the first retry waits 30 s, written down, not slept.
    assert 29 <= (row["retry_at"] - began).total_seconds() <= 31
    [entry] = outbox_rows(engine, job_id)
    assert entry["available_at"] == row["retry_at"]
    assert entry["topic"] == "jobs"

    # The same id redelivered before its time is left alone.
    early = executor.run([job_id])
    assert early.skipped == [job_id]
    assert len(summarizer.calls) == 1

    with engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(retry_at=utcnow()))
    later = executor.run([job_id])
    assert later.succeeded == [job_id]
    row = job(engine, job_id)
    assert (row["status"], row["error_code"], row["retry_at"]) == ("succeeded", None, None)
    assert row["attempts"] == 2


def test_retries_run_out_and_the_job_fails(engine: Engine) -> None:
    job_id = add_job(engine, "FLAKY document, always.", lane="bulk")
    summarizer = FakeSummarizer(failures={"FLAKY": SummarizerUnavailableError("device busy")}, fail_times=99)
    executor = executor_for(engine, summarizer)
    for retry in range(1, POLICY.max_retries + 1):
        assert executor.run([job_id]).retried == [job_id]
        assert job(engine, job_id)["retries"] == retry
        assert outbox_rows(engine, job_id)[-1]["topic"] == "jobs.bulk"
        with engine.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(retry_at=utcnow()))
    final = executor.run([job_id])
    assert final.failed == [job_id]
    row = job(engine, job_id)
    assert (row["status"], row["error_code"]) == ("failed", "summarizer_unavailable")
    # Retries are not poison claims: the job was claimed 3 times and never failed as poison.
    assert row["attempts"] == POLICY.max_retries + 1


def test_cancel_of_a_running_job_stops_it_at_a_chunk_boundary(engine: Engine) -> None:
    text = " ".join(f"word{i}" for i in range(2_000))
    job_id = add_job(engine, text)
    summarizer = FakeSummarizer(sleep_per_chunk_s=0.3, words_per_chunk=100)
    executor = executor_for(engine, summarizer)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(outcome=executor.run([job_id])))
    thread.start()
    deadline = time.monotonic() + 10
    while job(engine, job_id)["progress_done"] == 0:
        assert time.monotonic() < deadline, "no progress was recorded"
        time.sleep(0.05)
    with engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(cancel_requested=True))
    thread.join(timeout=30)
    assert result["outcome"].canceled == [job_id]
    row = job(engine, job_id)
    assert row["status"] == "canceled"
    assert 0 < row["progress_done"] < 20


def test_batch_completes_once_with_its_event(engine: Engine) -> None:
    batch_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(batches_table),
            [
                {
                    "id": batch_id,
                    "tenant": "acme",
                    "status": BatchStatus.IN_PROGRESS,
                    "total": 3,
                    "params": {},
                    "metadata": {},
                    "webhook_url": HOOK,
                    "cancel_requested": False,
                    "created_at": utcnow(),
                }
            ],
        )
    ids = [add_job(engine, f"Batch document {i}.", batch_id=batch_id, lane="bulk") for i in range(3)]
    executor = executor_for(engine, FakeSummarizer())
    first = executor.run(ids[:2])
    assert first.batches_completed == []
    second = executor.run(ids[2:])
    assert second.batches_completed == [batch_id]
    executor.run(ids)
    with engine.connect() as conn:
        status = conn.execute(
            select(batches_table.c.status).where(batches_table.c.id == batch_id)
        ).scalar_one()
    assert status == "completed"
    assert deliveries(engine, batch_id=batch_id, event_type="batch.completed") == 1


class SlowToPrepare(FakeSummarizer):
    """Spends a while before its first chunk, reporting nothing, like a huge document's segmentation."""

    def summarize_batch(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.8)
        return super().summarize_batch(*args, **kwargs)


def test_a_long_preparation_keeps_the_jobs_alive(engine: Engine) -> None:
    job_id = add_job(engine, "A document that takes long to prepare. It has two sentences.")
    executor = JobExecutor(engine, SlowToPrepare(), policy=POLICY, topic_for=TOPICS, heartbeat_s=0.1)
    seen: set[Any] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            row = job(engine, job_id)
            if row["status"] == "running":
                seen.add(row["updated_at"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert executor.run([job_id]).succeeded == [job_id]
    finally:
        done.set()
        watcher.join()
    # The claim's own write, then heartbeats while the engine said nothing.
    assert len(seen) >= 3
