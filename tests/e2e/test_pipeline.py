"""Long documents through the whole pipeline: HTTP -> database + outbox -> Kafka -> worker -> result."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, func, select

from schema.db import sync_url
from schema.models import NotificationDelivery, OutboxEntry, SummaryJob
from tests.fixtures.pipeline import PipelineFactory, make_document

HOOK = {"url": "http://127.0.0.1:9/hook", "secret": "whsec_dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ="}


@pytest.mark.drill
def test_200_long_documents_all_succeed(pipeline: PipelineFactory, db_url: str) -> None:
    run = pipeline(db_url)
    documents = [make_document(seed) for seed in range(200)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        jobs = list(pool.map(run.submit, documents))
    assert {job["status"] for job in jobs} == {"queued"}
    assert {job["route"] for job in jobs} == {"async"}
    final = run.wait_all_final([job["id"] for job in jobs], timeout_s=300)
    assert {job["status"] for job in final.values()} == {"succeeded"}
    for job, document in zip(jobs, documents, strict=True):
        done = final[job["id"]]
        assert done["summary"]
        # Extractive: every summary sentence comes from its own document, never a neighbour's.
        first_sentence = done["summary"].split(". ")[0].rstrip(".")
        assert first_sentence in document
        assert done["model"]["backend"]
        assert done["started_at"] and done["finished_at"]


def test_worker_killed_mid_batch_loses_nothing_and_stores_once(
    pipeline: PipelineFactory, pg_url: str
) -> None:
    run = pipeline(pg_url, env={"CONDENSE_WORKER__MAX_BATCH": "8"})
    jobs = [run.submit(make_document(seed, sentences=400), webhook=HOOK) for seed in range(40)]
    ids = [job["id"] for job in jobs]
    run.wait_for_status(ids, "running", timeout_s=120)
    run.stack.child("worker-0").kill()
    run.stack.condense("worker-1", "worker")
    final = run.wait_all_final(ids, timeout_s=300)
    assert {job["status"] for job in final.values()} == {"succeeded"}
    assert max(job["attempts"] for job in final.values()) >= 2, "no job was interrupted by the kill"
    engine = create_engine(sync_url(pg_url))
    with engine.connect() as conn:
        per_job = conn.execute(
            select(NotificationDelivery.job_id, func.count())
            .where(NotificationDelivery.job_id.in_(ids))
            .group_by(NotificationDelivery.job_id)
        ).all()
        stored = conn.execute(
            select(func.count()).select_from(SummaryJob).where(SummaryJob.summary.is_not(None))
        )
        assert stored.scalar_one() == len(ids)
    engine.dispose()
    # One finish per job: exactly one succeeded event was recorded for each.
    assert sorted(count for _, count in per_job) == [1] * len(ids)


def test_broker_restarted_empty_loses_no_job(pipeline: PipelineFactory, sqlite_url: str) -> None:
    # The default requeue_after_s (30 minutes) is left alone: the relay must notice the loss itself.
    run = pipeline(sqlite_url, workers=0)
    before = [run.submit(make_document(seed), mode="async") for seed in range(30)]
    engine = create_engine(sync_url(sqlite_url))
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        # Let the relay hand the first jobs to the broker, so the restart really loses them.
        while conn.execute(select(func.count()).select_from(OutboxEntry)).scalar_one():
            assert time.monotonic() < deadline, "the relay never published the outbox"
            time.sleep(0.1)
    engine.dispose()
    broker = run.stack.child("broker")
    broker.stop()
    during = [run.submit(make_document(seed), mode="async") for seed in range(30, 45)]
    broker.start(run.stack.env)
    run.stack.condense("worker-0", "worker")
    ids = [job["id"] for job in before + during]
    final = run.wait_all_final(ids, timeout_s=240)
    assert {job["status"] for job in final.values()} == {"succeeded"}
