"""The relay's sweeper against a real database: the settings decide what is stale, abandoned or
expired, and each repair runs on its own. No broker is involved: the sweeper only writes rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from relay.sweeper import Sweeper
from schema.models import jobs_table, outbox_table, utcnow
from schema.settings import DatabaseSettings, KafkaSettings, RelaySettings, Settings
from schema.store.sweeps import Purged
from tests.builders import job_values


def make_sweeper(url: str, *, retention_days: float = 7, **relay: Any) -> Sweeper:
    settings = Settings(
        database=DatabaseSettings(url=url, retention_days=retention_days),
        kafka=KafkaSettings(topic="jobs", bulk_topic="jobs.bulk"),
        relay=RelaySettings(**{"requeue_after_s": 3_600, "running_timeout_s": 60, **relay}),
    )
    return Sweeper(settings)


@pytest.fixture
def sweeper(db_url: str) -> Iterator[Sweeper]:
    sweeper = make_sweeper(db_url)
    yield sweeper
    sweeper.engine.dispose()


def insert_jobs(sweeper: Sweeper, *jobs: dict[str, Any]) -> None:
    with sweeper.engine.begin() as conn:
        conn.execute(insert(jobs_table), list(jobs))


def outbox_job_ids(sweeper: Sweeper) -> list[str]:
    with sweeper.engine.connect() as conn:
        return list(conn.execute(select(outbox_table.c.job_id).order_by(outbox_table.c.id)).scalars())


def statuses(sweeper: Sweeper) -> dict[str, str]:
    with sweeper.engine.connect() as conn:
        return {row.id: row.status for row in conn.execute(select(jobs_table.c.id, jobs_table.c.status))}


def test_queued_jobs_are_republished_only_after_requeue_after_s(sweeper: Sweeper) -> None:
    now = utcnow()
    stale = job_values(updated_at=now - timedelta(seconds=3_601))
    waiting = job_values(updated_at=now - timedelta(seconds=3_599))
    insert_jobs(sweeper, stale, waiting)

    assert sweeper.republish_queued(now) == [stale["id"]]
    assert outbox_job_ids(sweeper) == [stale["id"]]
    # Still in the outbox: not republished a second time.
    assert sweeper.republish_queued(now + timedelta(seconds=10)) == [waiting["id"]]


def test_a_queued_job_with_a_future_retry_is_not_republished_before_its_time(sweeper: Sweeper) -> None:
    now = utcnow()
    retry_at = now + timedelta(minutes=5)
    # A job whose retry lies ahead, and whose scheduled outbox row is gone (published early by an
    # older relay, or removed by hand): the sweeper must not bring it back before its time either.
    retrying = job_values(updated_at=now - timedelta(hours=2), retries=1, retry_at=retry_at)
    insert_jobs(sweeper, retrying)

    assert sweeper.republish_queued(now) == []
    assert sweeper.sweep(retry_at - timedelta(seconds=1)).republished == 0
    assert outbox_job_ids(sweeper) == []
    assert sweeper.republish_queued(retry_at) == [retrying["id"]]
    assert outbox_job_ids(sweeper) == [retrying["id"]]


def test_after_a_broker_loss_every_job_queued_before_it_is_republished(sweeper: Sweeper) -> None:
    now = utcnow()
    lost_at = now - timedelta(seconds=1)
    before_loss = job_values(updated_at=now - timedelta(seconds=30))
    after_loss = job_values(updated_at=now)
    retrying = job_values(updated_at=now - timedelta(seconds=30), retry_at=now + timedelta(seconds=30))
    insert_jobs(sweeper, before_loss, after_loss, retrying)

    assert sweeper.republish_queued(now) == [], "nothing is stale by requeue_after_s"
    assert sweeper.republish_queued(now, lost_before=lost_at) == [before_loss["id"]]


def test_abandoned_running_jobs_go_back_to_the_queue_on_their_lane(sweeper: Sweeper) -> None:
    now = utcnow()
    stuck = job_values(status="running", lane="bulk", updated_at=now - timedelta(seconds=61))
    busy = job_values(status="running", updated_at=now - timedelta(seconds=59))
    insert_jobs(sweeper, stuck, busy)

    assert sweeper.requeue_abandoned(now) == [stuck["id"]]
    assert statuses(sweeper) == {stuck["id"]: "queued", busy["id"]: "running"}
    with sweeper.engine.connect() as conn:
        assert conn.execute(select(outbox_table.c.job_id, outbox_table.c.topic)).all() == [
            (stuck["id"], "jobs.bulk")
        ]


def test_results_past_retention_days_are_purged(sweeper: Sweeper) -> None:
    now = utcnow()
    expired = job_values(status="succeeded", finished_at=now - timedelta(days=7, seconds=1))
    kept = job_values(status="succeeded", finished_at=now - timedelta(days=6))
    insert_jobs(sweeper, expired, kept)

    assert sweeper.purge_expired(now) == Purged(jobs=1, batches=0)
    assert set(statuses(sweeper)) == {kept["id"]}


def test_retention_zero_keeps_everything(sqlite_url: str) -> None:
    sweeper = make_sweeper(sqlite_url, retention_days=0)
    now = utcnow()
    ancient = job_values(status="failed", finished_at=now - timedelta(days=3_650))
    insert_jobs(sweeper, ancient)

    assert sweeper.purge_expired(now) == Purged()
    assert set(statuses(sweeper)) == {ancient["id"]}
    sweeper.engine.dispose()


def test_one_sweep_does_all_three_within_sweep_limit(sqlite_url: str) -> None:
    sweeper = make_sweeper(sqlite_url, sweep_limit=2)
    now = utcnow()
    old = now - timedelta(days=8)
    insert_jobs(
        sweeper,
        *(job_values(updated_at=old) for _ in range(3)),
        *(job_values(status="running", updated_at=old) for _ in range(3)),
        *(job_values(status="succeeded", finished_at=old) for _ in range(3)),
    )

    first = sweeper.sweep(now)
    second = sweeper.sweep(now)

    assert (first.republished, first.requeued, first.purged.jobs) == (2, 2, 2)
    # The requeued jobs are fresh now; the rest of each kind comes in the next sweep.
    assert (second.republished, second.requeued, second.purged.jobs) == (1, 1, 1)
    assert len(outbox_job_ids(sweeper)) == 6
    sweeper.engine.dispose()
