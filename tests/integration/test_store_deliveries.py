"""The delivery store on SQLite and PostgreSQL: exclusive claims, leases, replays, the delivery log."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, select

from schema.models import DeliveryStatus, attempts_table, batches_table, jobs_table, utcnow
from schema.store import deliveries
from schema.store.batches import new_batch
from schema.store.deliveries import DeliveryClaim
from schema.store.errors import DeliveryNotReplayableError, NotFoundError
from schema.store.events import (
    BATCH_COMPLETED,
    SUMMARY_FAILED,
    SUMMARY_SUCCEEDED,
    record_batch_event,
    record_job_event,
)
from schema.store.records import AttemptRecord, BatchRecord, DeliveryRecord, JobRecord
from tests.builders import job_values

LEASE = timedelta(seconds=30)


def add_job(engine: Engine, **columns: object) -> JobRecord:
    values = job_values(**{"status": "succeeded", "summary": "Short.", **columns})
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [values])
        return JobRecord.from_row(
            conn.execute(select(jobs_table).where(jobs_table.c.id == values["id"])).mappings().one()
        )


def job_event(engine: Engine, job: JobRecord, event_type: str = SUMMARY_SUCCEEDED) -> list[str]:
    with engine.begin() as conn:
        return record_job_event(conn, job, event_type)


def one_webhook_delivery(engine: Engine, tenant: str = "acme") -> str:
    job = add_job(engine, tenant=tenant, webhook_url="https://hooks.example/a", webhook_secret="whsec_x")
    [delivery_id] = job_event(engine, job)
    return delivery_id


def claim(engine: Engine, delivery_id: str, now: datetime) -> DeliveryClaim | None:
    with engine.begin() as conn:
        return deliveries.claim(conn, delivery_id, now, now + LEASE)


def record(
    engine: Engine,
    held: DeliveryClaim,
    *,
    at: datetime,
    status: DeliveryStatus,
    succeeded: bool = False,
    status_code: int | None = 500,
    error: str | None = "HTTP 500",
    next_attempt_at: datetime | None = None,
) -> bool:
    with engine.begin() as conn:
        return deliveries.record_attempt(
            conn,
            held.delivery,
            held.lease_until,
            attempted_at=at,
            succeeded=succeeded,
            status_code=status_code,
            latency_ms=12.5,
            error=error,
            status=status,
            next_attempt_at=next_attempt_at,
        )


def get(engine: Engine, delivery_id: str) -> DeliveryRecord:
    with engine.connect() as conn:
        return deliveries.get(conn, delivery_id)


def attempts_of(engine: Engine, delivery_id: str) -> list[AttemptRecord]:
    with engine.connect() as conn:
        return [
            AttemptRecord.from_row(row)
            for row in conn.execute(
                select(attempts_table)
                .where(attempts_table.c.delivery_id == delivery_id)
                .order_by(attempts_table.c.id)
            ).mappings()
        ]


def end_with(engine: Engine, delivery_id: str, status: DeliveryStatus) -> None:
    """Bring a fresh delivery to ``status`` the way the notifier does: claim, attempt, record."""
    now = utcnow()
    held = claim(engine, delivery_id, now)
    assert held is not None
    assert record(engine, held, at=now, status=status, succeeded=status == DeliveryStatus.SUCCEEDED)


# -- events -----------------------------------------------------------------------------------


def test_an_event_records_one_pending_delivery_per_destination(engine: Engine) -> None:
    job = add_job(
        engine, webhook_url="https://hooks.example/a", webhook_secret="whsec_x", email="a@b.example"
    )
    ids = job_event(engine, job, SUMMARY_FAILED)

    rows = [get(engine, i) for i in ids]
    assert [(r.channel, r.target, r.secret) for r in rows] == [
        ("webhook", "https://hooks.example/a", "whsec_x"),
        ("email", "a@b.example", None),
    ]
    assert {(r.tenant, r.job_id, r.batch_id, r.event_type, r.status, r.attempts) for r in rows} == {
        ("acme", job.id, None, SUMMARY_FAILED, "pending", 0)
    }
    assert all(r.event_id.startswith("msg_") for r in rows)
    assert rows[0].event_id != rows[1].event_id
    # Nowhere to send: nothing is recorded.
    assert job_event(engine, add_job(engine)) == []
    with pytest.raises(ValueError, match="not a job event"):
        job_event(engine, job, BATCH_COMPLETED)


# -- due and claim ----------------------------------------------------------------------------


def test_due_ids_are_pending_and_due_oldest_first(engine: Engine) -> None:
    first, second, third = (one_webhook_delivery(engine) for _ in range(3))
    end_with(engine, third, DeliveryStatus.SUCCEEDED)
    soon = utcnow() + timedelta(seconds=5)

    with engine.connect() as conn:
        assert deliveries.due_ids(conn, soon, 10) == [first, second]
        assert deliveries.due_ids(conn, soon, 1) == [first]
        assert deliveries.due_ids(conn, soon - timedelta(hours=1), 10) == []


def test_a_claim_is_exclusive_until_its_lease_runs_out(engine: Engine) -> None:
    delivery_id = one_webhook_delivery(engine)
    now = utcnow()

    held = claim(engine, delivery_id, now)
    assert held is not None
    assert held.delivery.id == delivery_id
    assert held.lease_until == now + LEASE
    assert held.delivery.next_attempt_at == held.lease_until
    assert isinstance(held.subject, JobRecord)
    assert (held.subject.summary, held.subject.retries, held.subject.retry_at) == ("Short.", 0, None)

    # Another process, or a nudge racing the sweep, gets nothing while the lease holds.
    assert claim(engine, delivery_id, now) is None
    assert claim(engine, delivery_id, now + LEASE - timedelta(seconds=1)) is None
    with engine.connect() as conn:
        assert deliveries.due_ids(conn, now, 10) == []
    # A process that died mid-attempt leaves the lease to run out; then the delivery is due again.
    assert claim(engine, delivery_id, now + LEASE) is not None


def test_nothing_to_claim(engine: Engine) -> None:
    delivery_id = one_webhook_delivery(engine)
    assert claim(engine, "no-such-delivery", utcnow()) is None
    assert claim(engine, delivery_id, utcnow() - timedelta(hours=1)) is None  # not due yet
    end_with(engine, delivery_id, DeliveryStatus.SUCCEEDED)
    assert claim(engine, delivery_id, utcnow() + timedelta(days=1)) is None  # finished


def test_a_batch_event_is_claimed_with_the_batch_and_its_counts(engine: Engine) -> None:
    batch = new_batch(tenant="acme", total=3, status="completed", webhook_url="https://hooks.example/b")
    with engine.begin() as conn:
        conn.execute(insert(batches_table), [batch.as_row()])
    add_job(engine, batch_id=batch.id)
    add_job(engine, batch_id=batch.id)
    add_job(engine, batch_id=batch.id, status="failed", summary=None)
    with engine.begin() as conn:
        [delivery_id] = record_batch_event(conn, batch)

    held = claim(engine, delivery_id, utcnow())

    assert held is not None
    assert held.delivery.batch_id == batch.id
    assert held.delivery.job_id is None
    assert isinstance(held.subject, BatchRecord)
    assert held.subject.id == batch.id
    assert (held.batch_counts.succeeded, held.batch_counts.failed, held.batch_counts.total) == (2, 1, 3)


def test_a_claim_whose_job_is_gone_has_no_subject(engine: Engine) -> None:
    job = add_job(engine, webhook_url="https://hooks.example/a")
    [delivery_id] = job_event(engine, job)
    with engine.begin() as conn:
        conn.execute(delete(jobs_table).where(jobs_table.c.id == job.id))

    held = claim(engine, delivery_id, utcnow())

    # Still claimed, so the notifier can record why it gives up instead of finding it again.
    assert held is not None
    assert held.subject is None
    assert claim(engine, delivery_id, utcnow()) is None


# -- recording attempts -----------------------------------------------------------------------


def test_a_result_moves_the_delivery_under_its_lease(engine: Engine) -> None:
    delivery_id = one_webhook_delivery(engine)
    now = utcnow()
    held = claim(engine, delivery_id, now)
    assert held is not None

    retry_at = now + timedelta(seconds=5)
    assert record(engine, held, at=now, status=DeliveryStatus.PENDING, next_attempt_at=retry_at)

    row = get(engine, delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        "pending",
        1,
        retry_at,
        "HTTP 500",
    )
    [attempt] = attempts_of(engine, delivery_id)
    assert (attempt.attempted_at, attempt.status_code, attempt.latency_ms, attempt.succeeded) == (
        now,
        500,
        12.5,
        False,
    )
    # The lease ended with the result: the same claim cannot record twice.
    assert not record(engine, held, at=now, status=DeliveryStatus.SUCCEEDED, succeeded=True)
    assert get(engine, delivery_id).status == "pending"


def test_a_result_after_the_lease_was_lost_is_refused(engine: Engine) -> None:
    delivery_id = one_webhook_delivery(engine)
    start = utcnow()
    slow = claim(engine, delivery_id, start)
    assert slow is not None
    # The slow attempt outlives its lease; another process takes the delivery over.
    later = start + LEASE + timedelta(seconds=1)
    fast = claim(engine, delivery_id, later)
    assert fast is not None

    assert not record(engine, slow, at=later, status=DeliveryStatus.DISABLED)
    row = get(engine, delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        "pending",
        0,
        fast.lease_until,
        None,
    )

    assert record(
        engine, fast, at=later, status=DeliveryStatus.SUCCEEDED, succeeded=True, status_code=200, error=None
    )
    row = get(engine, delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == ("succeeded", 1, None, None)
    # Both requests reached the receiver, so the log keeps both; only the delivery refused one.
    assert [(a.status_code, a.succeeded) for a in attempts_of(engine, delivery_id)] == [
        (500, False),
        (200, True),
    ]
    # Even a late result of the first claim cannot undo the success.
    assert not record(engine, slow, at=later, status=DeliveryStatus.PENDING, next_attempt_at=later)
    assert get(engine, delivery_id).status == "succeeded"


# -- redeliver --------------------------------------------------------------------------------


@pytest.mark.parametrize("ended", [DeliveryStatus.EXHAUSTED, DeliveryStatus.DISABLED])
def test_redeliver_resets_a_delivery_that_gave_up(engine: Engine, ended: DeliveryStatus) -> None:
    delivery_id = one_webhook_delivery(engine)
    end_with(engine, delivery_id, ended)
    before = get(engine, delivery_id)
    assert (before.status, before.attempts, before.last_error) == (ended.value, 1, "HTTP 500")

    with engine.begin() as conn:
        reset = deliveries.redeliver(conn, delivery_id, tenant="acme")

    assert (reset.status, reset.attempts, reset.last_error) == ("pending", 0, None)
    assert reset.next_attempt_at is not None and reset.next_attempt_at >= before.updated_at
    assert reset.event_id == before.event_id  # receivers deduplicating on webhook-id still can
    assert get(engine, delivery_id) == reset
    assert len(attempts_of(engine, delivery_id)) == 1  # the log keeps the earlier round
    with engine.connect() as conn:
        assert deliveries.due_ids(conn, utcnow(), 10) == [delivery_id]


@pytest.mark.parametrize("state", [DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED])
def test_redeliver_refuses_a_delivery_that_has_not_given_up(engine: Engine, state: DeliveryStatus) -> None:
    delivery_id = one_webhook_delivery(engine)
    if state != DeliveryStatus.PENDING:
        end_with(engine, delivery_id, state)
    before = get(engine, delivery_id)

    with engine.begin() as conn, pytest.raises(DeliveryNotReplayableError, match=state.value) as refused:
        deliveries.redeliver(conn, delivery_id)

    assert refused.value.code == "delivery_not_replayable"
    assert get(engine, delivery_id) == before


def test_redeliver_does_not_see_other_tenants_deliveries(engine: Engine) -> None:
    delivery_id = one_webhook_delivery(engine, tenant="acme")
    end_with(engine, delivery_id, DeliveryStatus.EXHAUSTED)

    for tenant, missing in (
        ("globex", delivery_id),
        ("acme", "no-such-delivery"),
        (None, "no-such-delivery"),
    ):
        with engine.begin() as conn, pytest.raises(NotFoundError) as refused:
            deliveries.redeliver(conn, missing, tenant=tenant)
        assert refused.value.code == "not_found"
    assert get(engine, delivery_id).status == "exhausted"


# -- the delivery log -------------------------------------------------------------------------


def test_list_for_job_gives_each_delivery_with_its_attempts_in_order(engine: Engine) -> None:
    job = add_job(
        engine, webhook_url="https://hooks.example/a", webhook_secret="whsec_x", email="a@b.example"
    )
    webhook_id, email_id = job_event(engine, job)
    other_delivery_id = one_webhook_delivery(engine)
    start = utcnow()
    for step, status in enumerate((DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED)):
        now = start + timedelta(minutes=step)
        held = claim(engine, webhook_id, now)
        assert held is not None
        assert record(
            engine,
            held,
            at=now,
            status=status,
            succeeded=status == DeliveryStatus.SUCCEEDED,
            status_code=200 if status == DeliveryStatus.SUCCEEDED else 500 + step,
            next_attempt_at=now if status == DeliveryStatus.PENDING else None,
        )
    end_with(engine, other_delivery_id, DeliveryStatus.SUCCEEDED)

    with engine.connect() as conn:
        listed = deliveries.list_for_job(conn, job.id)
        assert deliveries.list_for_job(conn, job.id, tenant="acme") == listed
        assert deliveries.list_for_job(conn, job.id, tenant="globex") == []
        assert deliveries.list_for_job(conn, "no-such-job") == []

    assert [(d.id, d.channel) for d, _ in listed] == [(webhook_id, "webhook"), (email_id, "email")]
    (webhook, webhook_attempts), (email, email_attempts) = listed
    assert (webhook.status, webhook.attempts) == ("succeeded", 3)
    assert [(a.status_code, a.succeeded) for a in webhook_attempts] == [
        (500, False),
        (501, False),
        (200, True),
    ]
    assert [a.attempted_at for a in webhook_attempts] == [start + timedelta(minutes=m) for m in range(3)]
    assert all(a.delivery_id == webhook_id for a in webhook_attempts)
    assert (email.status, email_attempts) == ("pending", [])
