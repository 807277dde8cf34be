"""Job and batch transitions of the store, each guarded by the current state, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from schema.models import JobStatus, deliveries_table, outbox_table, utcnow
from schema.store import batches, jobs
from schema.store.errors import BatchFinishedError, JobFinishedError, NotFoundError
from schema.store.jobs import Outcome
from schema.store.records import JobRecord

TOPICS = {"interactive": "jobs", "bulk": "jobs.bulk"}
HOOK = "https://hooks.example.org/condense"


def insert(engine: Engine, **columns: object) -> JobRecord:
    job = jobs.new_job(tenant="acme", text="Some text.", **columns)
    with engine.begin() as conn:
        jobs.insert_jobs(conn, [job], topic_for=TOPICS)
    return job


def fetch(engine: Engine, job_id: str) -> JobRecord:
    with engine.connect() as conn:
        return jobs.get(conn, job_id)


def count(engine: Engine, table: object, **where: str) -> int:
    query = select(func.count()).select_from(table)  # type: ignore[arg-type]
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_insert_writes_an_outbox_row_per_queued_job_on_its_lane(engine: Engine) -> None:
    queued = insert(engine)
    bulk = insert(engine, lane="bulk")
    answered = insert(engine, status="succeeded", route="sync", summary="Done.", webhook_url=HOOK)
    with engine.connect() as conn:
        topics = dict(conn.execute(select(outbox_table.c.job_id, outbox_table.c.topic)).all())
    assert topics == {queued.id: "jobs", bulk.id: "jobs.bulk"}
    # A job stored already final owes its notification at once.
    assert count(engine, deliveries_table, job_id=answered.id, event_type="summary.succeeded") == 1


def test_a_duplicate_idempotency_key_inserts_nothing(engine: Engine) -> None:
    insert(engine, idempotency_key="k1")
    with pytest.raises(IntegrityError):
        insert(engine, idempotency_key="k1")
    with engine.connect() as conn:
        found = jobs.find_by_idempotency_key(conn, "acme", "k1")
        assert found is not None
        assert jobs.find_by_idempotency_key(conn, "other", "k1") is None
    assert count(engine, outbox_table) == 1


def test_get_hides_other_tenants(engine: Engine) -> None:
    job = insert(engine)
    with engine.connect() as conn, pytest.raises(NotFoundError):
        jobs.get(conn, job.id, tenant="someone-else")


def test_claim_runs_open_jobs_once_and_skips_the_rest(engine: Engine) -> None:
    queued = insert(engine)
    done = insert(engine, status="succeeded")
    with engine.begin() as conn:
        first = jobs.claim(conn, [queued.id, done.id, "missing", queued.id], max_claims=3)
    assert [job.id for job in first.running] == [queued.id]
    assert first.running[0].status == "running"
    assert first.running[0].attempts == 1
    assert first.skipped == [done.id, "missing"]


def test_claim_fails_a_job_whose_claims_never_ended(engine: Engine) -> None:
    poison = insert(engine, status="running", attempts=3, webhook_url=HOOK)
    retried = insert(engine, status="queued", attempts=3, retries=1)
    with engine.begin() as conn:
        claimed = jobs.claim(conn, [poison.id, retried.id], max_claims=3)
    assert [ended.job.id for ended in claimed.ended] == [poison.id]
    assert claimed.ended[0].job.error_code == "max_attempts_exceeded"
    assert len(claimed.ended[0].delivery_ids) == 1
    # Two of its three claims ended in an outcome (a retry), so it is no poison.
    assert [job.id for job in claimed.running] == [retried.id]


def test_claim_leaves_a_job_alone_until_its_retry_time(engine: Engine) -> None:
    later = insert(engine, retry_at=utcnow() + timedelta(minutes=5))
    with engine.begin() as conn:
        assert jobs.claim(conn, [later.id], max_claims=3).skipped == [later.id]
        now = utcnow() + timedelta(minutes=6)
        assert [job.id for job in jobs.claim(conn, [later.id], max_claims=3, now=now).running] == [later.id]


def test_finish_happens_once(engine: Engine) -> None:
    job = insert(engine, status="running", email="ada@example.com")
    with engine.begin() as conn:
        first = jobs.finish(conn, job.id, Outcome(JobStatus.SUCCEEDED, summary="Short.", chunks=2))
        second = jobs.fail(conn, job.id, "late", "a second worker finished too")
    assert first is not None and second is None
    assert len(first.delivery_ids) == 1
    stored = fetch(engine, job.id)
    assert (stored.status, stored.summary, stored.progress_total, stored.error_code) == (
        "succeeded",
        "Short.",
        2,
        None,
    )
    with engine.begin() as conn, pytest.raises(ValueError):
        jobs.finish(conn, job.id, Outcome(JobStatus.RUNNING))


def test_cancel_ends_a_queued_job_and_flags_a_running_one(engine: Engine) -> None:
    queued = insert(engine)
    running = insert(engine, status="running")
    done = insert(engine, status="failed")
    with engine.begin() as conn:
        assert jobs.cancel(conn, queued.id, tenant="acme").status == "canceled"
        flagged = jobs.cancel(conn, running.id, tenant="acme")
        assert (flagged.status, flagged.cancel_requested) == ("running", True)
        assert jobs.cancel_requested(conn, [queued.id, running.id]) == {running.id}
    with engine.begin() as conn, pytest.raises(JobFinishedError):
        jobs.cancel(conn, done.id, tenant="acme")
    with engine.begin() as conn, pytest.raises(NotFoundError):
        jobs.cancel(conn, running.id, tenant="other")


def test_retry_only_moves_a_running_job(engine: Engine) -> None:
    running = insert(engine, status="running")
    queued = insert(engine)
    retry_at = utcnow() + timedelta(seconds=30)
    with engine.begin() as conn:
        assert jobs.retry(
            conn, running.id, retry_at=retry_at, topic="jobs", error_code="oom", error_message="m"
        )
        assert not jobs.retry(
            conn, queued.id, retry_at=retry_at, topic="jobs", error_code="oom", error_message="m"
        )
    stored = fetch(engine, running.id)
    assert (stored.status, stored.retries, stored.retry_at) == ("queued", 1, retry_at)
    # Inserted running, so the only outbox row is the retry, due at its time.
    assert count(engine, outbox_table, job_id=running.id) == 1


def test_progress_is_recorded_for_running_jobs_only(engine: Engine) -> None:
    running = insert(engine, status="running")
    queued = insert(engine)
    with engine.begin() as conn:
        jobs.record_progress(conn, {running.id: (2, 5), queued.id: (1, 1)})
    assert (fetch(engine, running.id).progress_done, fetch(engine, queued.id).progress_done) == (2, 0)


def test_a_batch_closes_once_when_its_last_document_ends(engine: Engine) -> None:
    batch = batches.new_batch(tenant="acme", total=2, webhook_url=HOOK)
    docs = [jobs.new_job(tenant="acme", text=f"Doc {i}.", batch_id=batch.id, lane="bulk") for i in range(2)]
    with engine.begin() as conn:
        batches.create(conn, batch, docs, topic_for=TOPICS)
        jobs.claim(conn, [doc.id for doc in docs], max_claims=3)
        jobs.finish(conn, docs[0].id, Outcome(JobStatus.SUCCEEDED, summary="One."))
        assert batches.complete_if_done(conn, batch.id) is None
        jobs.fail(conn, docs[1].id, "invalid_document", "unreadable")
        closed = batches.complete_if_done(conn, batch.id)
        assert batches.complete_if_done(conn, batch.id) is None
        counts = batches.counts(conn, batch.id)
        results = batches.results_page(conn, batch.id, after_id="", limit=10)
    assert closed is not None and closed.batch.status == "completed" and len(closed.delivery_ids) == 1
    assert (counts.total, counts.succeeded, counts.failed) == (2, 1, 1)
    assert [(r.job_id, r.status) for r in results] == [(docs[0].id, "succeeded"), (docs[1].id, "failed")]


def test_cancelling_a_batch_ends_its_queued_documents(engine: Engine) -> None:
    batch = batches.new_batch(tenant="acme", total=2)
    docs = [jobs.new_job(tenant="acme", text=f"Doc {i}.", batch_id=batch.id, lane="bulk") for i in range(2)]
    with engine.begin() as conn:
        batches.create(conn, batch, docs, topic_for=TOPICS)
        jobs.claim(conn, [docs[0].id], max_claims=3)
        canceled = batches.cancel(conn, batch.id, tenant="acme")
        assert canceled.status == "in_progress"  # a document still runs
        assert batches.counts(conn, batch.id).canceled == 1
        jobs.finish(conn, docs[0].id, Outcome(JobStatus.SUCCEEDED, summary="One."))
        assert batches.complete_if_done(conn, batch.id) is not None
        assert batches.get(conn, batch.id).status == "canceled"
    with engine.begin() as conn, pytest.raises(BatchFinishedError):
        batches.cancel(conn, batch.id, tenant="acme")
