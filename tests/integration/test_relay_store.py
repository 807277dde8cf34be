"""The relay's queries in the job store (schema.store.outbox, schema.store.sweeps) on SQLite and
PostgreSQL: which rows are due, which jobs a sweep takes, what a purge deletes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from schema.db import make_engine
from schema.models import (
    attempts_table,
    batches_table,
    deliveries_table,
    jobs_table,
    new_id,
    outbox_table,
    utcnow,
)
from schema.settings import DatabaseSettings
from schema.store import outbox, sweeps
from schema.store.sweeps import Purged
from tests.builders import job_values

TOPIC_FOR = {"interactive": "jobs", "bulk": "jobs.bulk"}


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(DatabaseSettings(url=pg_url))
    yield engine
    engine.dispose()


def insert_jobs(engine: Engine, *jobs: dict[str, Any]) -> list[str]:
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), list(jobs))
    return [job["id"] for job in jobs]


def outbox_rows(engine: Engine) -> list[tuple[str, str, datetime | None]]:
    with engine.connect() as conn:
        return [
            (row.job_id, row.topic, row.available_at)
            for row in conn.execute(
                select(outbox_table.c.job_id, outbox_table.c.topic, outbox_table.c.available_at).order_by(
                    outbox_table.c.id
                )
            )
        ]


def job_columns(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).mappings().one())


# -- outbox ------------------------------------------------------------------------------------


def test_only_due_rows_are_taken_oldest_first(engine: Engine) -> None:
    now = utcnow()
    first, later, scheduled, due_retry, last = (new_id() for _ in range(5))
    with engine.begin() as conn:
        outbox.add(conn, [(first, "jobs"), (later, "jobs.bulk")], now=now)
        outbox.add(conn, [(scheduled, "jobs")], now=now, available_at=now + timedelta(seconds=30))
        outbox.add(conn, [(due_retry, "jobs")], now=now, available_at=now - timedelta(seconds=1))
        outbox.add(conn, [(last, "jobs")], now=now)

    with engine.begin() as conn:
        taken = outbox.take_due(conn, now=now, limit=10)
        limited = outbox.take_due(conn, now=now, limit=2)
        at_its_time = outbox.take_due(conn, now=now + timedelta(seconds=30), limit=10)

    assert [row.job_id for row in taken] == [first, later, due_retry, last]
    assert [(row.job_id, row.topic) for row in limited] == [(first, "jobs"), (later, "jobs.bulk")]
    assert scheduled in [row.job_id for row in at_its_time]
    assert taken[2].available_at == now - timedelta(seconds=1)
    assert taken[0].available_at is None


def test_published_rows_are_deleted_and_pending_counts_what_is_due(engine: Engine) -> None:
    now = utcnow()
    scheduled = new_id()
    with engine.begin() as conn:
        assert outbox.add(conn, [(new_id(), "jobs") for _ in range(3)], now=now) == 3
        outbox.add(conn, [(scheduled, "jobs")], now=now, available_at=now + timedelta(minutes=5))

    with engine.begin() as conn:
        assert outbox.count_pending(conn, now=now) == 3
        assert outbox.count_pending(conn) == 4
        taken = outbox.take_due(conn, now=now, limit=10)
        assert outbox.delete_published(conn, [taken[0].id, taken[1].id]) == 2
        assert outbox.delete_published(conn, []) == 0

    with engine.connect() as conn:
        assert outbox.count_pending(conn, now=now) == 1
        assert outbox.count_pending(conn, now=now + timedelta(minutes=5)) == 2
    assert [job_id for job_id, _topic, _at in outbox_rows(engine)] == [taken[2].job_id, scheduled]


def test_relays_on_postgresql_take_rows_the_others_have_not_locked(pg_engine: Engine) -> None:
    now = utcnow()
    with pg_engine.begin() as conn:
        outbox.add(conn, [(new_id(), "jobs") for _ in range(5)], now=now)

    with pg_engine.connect() as first, pg_engine.connect() as second:
        with first.begin():
            mine = outbox.take_due(first, now=now, limit=3)
            with second.begin():
                theirs = outbox.take_due(second, now=now, limit=10)

    assert len(mine) == 3
    assert len(theirs) == 2
    assert {row.id for row in mine}.isdisjoint(row.id for row in theirs)


# -- republishing queued jobs ------------------------------------------------------------------


def test_stale_queued_jobs_are_republished_on_their_lane_topic(engine: Engine) -> None:
    now = utcnow()
    old = now - timedelta(hours=1)
    stale = job_values(updated_at=old)
    stale_bulk = job_values(updated_at=old, lane="bulk")
    fresh = job_values(updated_at=now)
    sync = job_values(updated_at=old, route="sync")
    running = job_values(updated_at=old, status="running")
    done = job_values(updated_at=old, status="succeeded", finished_at=old)
    in_outbox = job_values(updated_at=old)
    insert_jobs(engine, stale, stale_bulk, fresh, sync, running, done, in_outbox)
    with engine.begin() as conn:
        outbox.add(conn, [(in_outbox["id"], "jobs")], now=old)

    with engine.begin() as conn:
        ids = sweeps.republish_queued(conn, now - timedelta(minutes=30), 100, now=now, topic_for=TOPIC_FOR)

    assert sorted(ids) == sorted([stale["id"], stale_bulk["id"]])
    assert sorted(outbox_rows(engine)) == sorted(
        [(in_outbox["id"], "jobs", None), (stale["id"], "jobs", None), (stale_bulk["id"], "jobs.bulk", None)]
    )
    assert job_columns(engine, stale["id"])["updated_at"] == now
    assert job_columns(engine, stale["id"])["status"] == "queued"


def test_a_queued_job_waiting_for_its_retry_is_not_republished_before_its_time(engine: Engine) -> None:
    now = utcnow()
    old = now - timedelta(hours=1)
    waiting = job_values(updated_at=old, retries=1, retry_at=now + timedelta(minutes=1))
    retried = job_values(updated_at=old, retries=1, retry_at=now - timedelta(minutes=1))
    insert_jobs(engine, waiting, retried)

    with engine.begin() as conn:
        early = sweeps.republish_queued(conn, now, 100, now=now, topic_for=TOPIC_FOR)
    later = now + timedelta(minutes=1)
    with engine.begin() as conn:
        on_time = sweeps.republish_queued(conn, now, 100, now=later, topic_for=TOPIC_FOR)

    assert early == [retried["id"]]
    assert on_time == [waiting["id"]]


def test_republishing_takes_the_oldest_jobs_up_to_the_limit_and_each_once(engine: Engine) -> None:
    now = utcnow()
    jobs = [job_values(updated_at=now - timedelta(minutes=60 - minute)) for minute in range(5)]
    insert_jobs(engine, *jobs)
    before = now - timedelta(minutes=1)

    with engine.begin() as conn:
        first = sweeps.republish_queued(conn, before, 3, now=now, topic_for=TOPIC_FOR)
    with engine.begin() as conn:
        outbox.delete_published(conn, [row.id for row in outbox.take_due(conn, now=now, limit=10)])
        second = sweeps.republish_queued(conn, before, 3, now=now, topic_for=TOPIC_FOR)
    with engine.begin() as conn:
        outbox.delete_published(conn, [row.id for row in outbox.take_due(conn, now=now, limit=10)])
        third = sweeps.republish_queued(conn, before, 3, now=now, topic_for=TOPIC_FOR)

    assert sorted(first) == sorted(job["id"] for job in jobs[:3])
    # Republished jobs count as touched now: the next sweep takes the rest, then nothing.
    assert sorted(second) == sorted(job["id"] for job in jobs[3:])
    assert third == []


# -- abandoned running jobs --------------------------------------------------------------------


def test_running_jobs_untouched_since_the_cutoff_are_queued_again(engine: Engine) -> None:
    now = utcnow()
    stuck = job_values(status="running", lane="bulk", updated_at=now - timedelta(minutes=20))
    stuck_too = job_values(status="running", updated_at=now - timedelta(minutes=19))
    busy = job_values(status="running", updated_at=now - timedelta(minutes=1))
    queued = job_values(updated_at=now - timedelta(hours=1))
    insert_jobs(engine, stuck, stuck_too, busy, queued)
    stale_before = now - timedelta(minutes=15)

    with engine.begin() as conn:
        first = sweeps.requeue_abandoned(conn, stale_before, 1, now=now, topic_for=TOPIC_FOR)
    with engine.begin() as conn:
        second = sweeps.requeue_abandoned(conn, stale_before, 1, now=now, topic_for=TOPIC_FOR)
    with engine.begin() as conn:
        third = sweeps.requeue_abandoned(conn, stale_before, 1, now=now, topic_for=TOPIC_FOR)

    assert (first, second, third) == ([stuck["id"]], [stuck_too["id"]], [])
    assert outbox_rows(engine) == [(stuck["id"], "jobs.bulk", None), (stuck_too["id"], "jobs", None)]
    assert {job["id"]: job_columns(engine, job["id"])["status"] for job in (stuck, busy, queued)} == {
        stuck["id"]: "queued",
        busy["id"]: "running",
        queued["id"]: "queued",
    }
    assert job_columns(engine, stuck["id"])["updated_at"] == now


def test_sweeps_on_postgresql_skip_jobs_another_relay_is_requeueing(pg_engine: Engine) -> None:
    now = utcnow()
    jobs = [job_values(status="running", updated_at=now - timedelta(hours=1)) for _ in range(4)]
    insert_jobs(pg_engine, *jobs)

    with pg_engine.connect() as first, pg_engine.connect() as second:
        with first.begin():
            mine = sweeps.requeue_abandoned(first, now, 2, now=now, topic_for=TOPIC_FOR)
            with second.begin():
                theirs = sweeps.requeue_abandoned(second, now, 10, now=now, topic_for=TOPIC_FOR)

    assert len(mine) == 2
    assert sorted(mine + theirs) == sorted(job["id"] for job in jobs)
    assert len(outbox_rows(pg_engine)) == 4


# -- retention ---------------------------------------------------------------------------------


def test_purge_deletes_final_jobs_their_deliveries_and_emptied_batches(engine: Engine) -> None:
    now = utcnow()
    old = now - timedelta(days=8)
    cutoff = now - timedelta(days=7)
    batch_id, open_batch_id = new_id(), new_id()
    expired = job_values(status="succeeded", finished_at=old)
    expired_in_batch = job_values(status="failed", finished_at=old, batch_id=batch_id)
    recent = job_values(status="succeeded", finished_at=now - timedelta(days=1))
    still_queued = job_values(created_at=old, updated_at=old)
    still_running = job_values(status="running", created_at=old, updated_at=old, batch_id=open_batch_id)
    delivery_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(batches_table),
            [
                {
                    "id": bid,
                    "tenant": "acme",
                    "status": "completed",
                    "total": 1,
                    "params": {},
                    "metadata": {},
                    "cancel_requested": False,
                    "created_at": old,
                    "finished_at": old,
                }
                for bid in (batch_id, open_batch_id)
            ],
        )
        conn.execute(insert(jobs_table), [expired, expired_in_batch, recent, still_queued, still_running])
        conn.execute(
            insert(deliveries_table),
            [
                {
                    "id": delivery_id,
                    "tenant": "acme",
                    "job_id": expired["id"],
                    "batch_id": None,
                    "event_type": "summary.succeeded",
                    "channel": "webhook",
                    "target": "https://hooks.example.org/x",
                    "event_id": f"msg_{new_id()}",
                    "status": "succeeded",
                    "attempts": 1,
                },
                {
                    "id": new_id(),
                    "tenant": "acme",
                    "job_id": None,
                    "batch_id": batch_id,
                    "event_type": "batch.completed",
                    "channel": "webhook",
                    "target": "https://hooks.example.org/x",
                    "event_id": f"msg_{new_id()}",
                    "status": "succeeded",
                    "attempts": 1,
                },
            ],
        )
        conn.execute(
            insert(attempts_table),
            [{"delivery_id": delivery_id, "attempted_at": old, "status_code": 200, "succeeded": True}],
        )

    with engine.begin() as conn:
        purged = sweeps.purge_expired(conn, cutoff, 100)
    with engine.begin() as conn:
        again = sweeps.purge_expired(conn, cutoff, 100)

    assert purged == Purged(jobs=2, batches=1)
    assert again == Purged()
    with engine.connect() as conn:
        left = set(conn.execute(select(jobs_table.c.id)).scalars())
        batches = set(conn.execute(select(batches_table.c.id)).scalars())
        deliveries = conn.execute(select(func.count()).select_from(deliveries_table)).scalar_one()
        attempts = conn.execute(select(func.count()).select_from(attempts_table)).scalar_one()
    assert left == {recent["id"], still_queued["id"], still_running["id"]}
    assert batches == {open_batch_id}, "a batch with a job left stays"
    assert (deliveries, attempts) == (0, 0)


def test_purge_stops_at_the_limit(engine: Engine) -> None:
    now = utcnow()
    old = now - timedelta(days=8)
    insert_jobs(engine, *(job_values(status="canceled", finished_at=old) for _ in range(3)))

    with engine.begin() as conn:
        first = sweeps.purge_expired(conn, now, 2)
    with engine.begin() as conn:
        second = sweeps.purge_expired(conn, now, 2)

    assert (first.jobs, second.jobs) == (2, 1)
