"""Job execution on a real database (SQLite and PostgreSQL), with the in-memory summarizer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, update

from schema.db import sync_url
from schema.jobs import BatchStatus
from schema.models import (
    NotificationDelivery,
    batches_table,
    jobs_table,
    new_id,
    utcnow,
)
from schema.settings import RetryStrategySettings
from summarizer.errors import InvalidDocumentError, SummarizerRetryableError
from summarizer.testing import FakeSummarizer
from tests.builders import job_values
from workers.execution import JobExecutor

RETRY = RetryStrategySettings(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
HOOK = "https://hooks.example.org/condense"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(db_url))
    yield engine
    engine.dispose()


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
    executor = JobExecutor(engine, FakeSummarizer(), retry=RETRY)
    outcome = executor.run(ids)
    assert sorted(outcome.succeeded) == sorted(ids)
    assert len(outcome.delivery_ids) == 5
    for job_id in ids:
        row = job(engine, job_id)
        assert row["status"] == "succeeded"
        assert row["summary"].startswith("Document")
        assert row["model"]["name"] == "fake-extractive"
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
    outcome = JobExecutor(engine, summarizer, retry=RETRY).run([good, bad])
    assert outcome.succeeded == [good]
    assert outcome.failed == [bad]
    assert job(engine, bad)["error_code"] == "invalid_document"
    assert outcome.failure_codes == ["invalid_document"]


def test_a_job_claimed_too_often_is_failed_instead_of_retried(engine: Engine) -> None:
    poison = add_job(engine, "Crashes its worker every time.", attempts=3, status="running")
    outcome = JobExecutor(engine, FakeSummarizer(), retry=RETRY).run([poison])
    assert outcome.failed == [poison]
    assert job(engine, poison)["error_code"] == "max_attempts_exceeded"


def test_out_of_memory_halves_the_batch_until_it_fits(engine: Engine) -> None:
    ids = [add_job(engine, f"Document {i}. Text.") for i in range(7)]
    summarizer = FakeSummarizer(oom_over_docs=2)
    outcome = JobExecutor(engine, summarizer, retry=RETRY).run(ids)
    assert sorted(outcome.succeeded) == sorted(ids)
    # Every document was finally summarized once, in a call small enough to fit.
    fitting = [doc for call in summarizer.calls if len(call) <= 2 for doc in call]
    assert len(fitting) == len(ids)


def test_retryable_engine_error_is_retried(engine: Engine) -> None:
    job_id = add_job(engine, "FLAKY document. It works the second time.")
    summarizer = FakeSummarizer(failures={"FLAKY": SummarizerRetryableError("device busy")}, fail_times=1)
    sleeps: list[float] = []
    outcome = JobExecutor(engine, summarizer, retry=RETRY, sleep=sleeps.append).run([job_id])
    assert outcome.succeeded == [job_id]
    assert len(summarizer.calls) == 2
    assert len(sleeps) == 1


def test_cancel_of_a_running_job_stops_it_at_a_chunk_boundary(engine: Engine) -> None:
    text = " ".join(f"word{i}" for i in range(2_000))
    job_id = add_job(engine, text)
    summarizer = FakeSummarizer(sleep_per_chunk_s=0.3, words_per_chunk=100)
    executor = JobExecutor(engine, summarizer, retry=RETRY)
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
    executor = JobExecutor(engine, FakeSummarizer(), retry=RETRY)
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
