"""The notifier against real receivers: an HTTP server checking signatures with the reference
Standard Webhooks library, and an aiosmtpd server, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select

from common.urlsafety import UnsafeUrlError, check_webhook_url
from notifier.dispatch import Dispatcher
from schema.db import make_engine
from schema.models import attempts_table, batches_table, jobs_table, new_id, utcnow
from schema.settings import Settings, SmtpSettings
from schema.store import deliveries
from schema.store.errors import DeliveryNotReplayableError, NotFoundError
from schema.store.events import BATCH_COMPLETED, record_batch_event
from schema.store.records import AttemptRecord, BatchRecord, DeliveryRecord
from tests.fixtures.notifier import delivery, finish_job, make_settings
from tests.fixtures.receivers import (
    SmtpServer,
    WebhookReceiver,
    free_port,
    reference_secret,
)

JOBS = jobs_table
BATCHES = batches_table
ATTEMPTS = attempts_table


def attempts(engine: Engine, delivery_id: str) -> list[AttemptRecord]:
    with engine.connect() as conn:
        return [
            AttemptRecord.from_row(row)
            for row in conn.execute(
                select(ATTEMPTS).where(ATTEMPTS.c.delivery_id == delivery_id).order_by(ATTEMPTS.c.id)
            ).mappings()
        ]


def redeliver(engine: Engine, delivery_id: str, *, tenant: str | None = None) -> DeliveryRecord:
    with engine.begin() as conn:
        return deliveries.redeliver(conn, delivery_id, tenant=tenant)


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


# -- webhooks ---------------------------------------------------------------------------------


def test_webhook_is_signed_verified_and_logged(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)
    job_id, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    assert dispatcher.deliver_due() == 1

    [request] = webhook_receiver.requests
    assert request.verified, request.verify_error
    assert request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    row = delivery(engine, delivery_id)
    assert request.webhook_id == row.event_id
    assert request.payload["type"] == "summary.succeeded"
    assert request.payload["data"]["id"] == job_id
    assert request.payload["data"]["status"] == "succeeded"
    assert request.payload["data"]["summary"] == "A short summary."
    assert request.payload["data"]["summary_url"] is None
    assert request.payload["data"]["metadata"] == {"ref": "x-1"}
    assert row.status == "succeeded"
    assert row.attempts == 1
    assert row.next_attempt_at is None
    [attempt] = attempts(engine, delivery_id)
    assert attempt.succeeded is True
    assert attempt.status_code == 200
    assert attempt.latency_ms is not None and attempt.latency_ms > 0
    # Nothing more is due once it succeeded, however late it gets.
    assert dispatcher.deliver_due(later(10**6)) == 0
    assert len(webhook_receiver.requests) == 1


def test_failed_job_event_carries_the_error(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)
    finish_job(
        engine, status="failed", webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    dispatcher.deliver_due()

    [request] = webhook_receiver.requests
    assert request.verified
    assert request.payload["type"] == "summary.failed"
    assert request.payload["data"]["error"] == {"code": "bad_document", "message": "could not read it"}


def test_retries_until_the_receiver_recovers_with_the_same_webhook_id(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url, retry_schedule_s=[5, 60, 600]), engine)
    webhook_receiver.respond_with(500, 502)
    _, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    start = utcnow()
    assert dispatcher.deliver_due(start) == 1
    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == start + timedelta(seconds=5)
    assert row.last_error is not None and "HTTP 500" in row.last_error
    # Not due before the first slot of the schedule.
    assert dispatcher.deliver_due(start + timedelta(seconds=4)) == 0
    assert dispatcher.deliver_due(start + timedelta(seconds=5)) == 1
    assert dispatcher.deliver_due(start + timedelta(seconds=5 + 59)) == 0
    assert dispatcher.deliver_due(start + timedelta(seconds=5 + 60)) == 1

    requests = webhook_receiver.requests
    assert [r.status for r in requests] == [500, 502, 200]
    assert all(r.verified for r in requests), [r.verify_error for r in requests]
    assert len({r.webhook_id for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # the payload is the event's, not the attempt's
    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts, row.last_error) == ("succeeded", 3, None)
    assert [(a.status_code, a.succeeded) for a in attempts(engine, delivery_id)] == [
        (500, False),
        (502, False),
        (200, True),
    ]


def test_short_real_time_schedule_delivers_after_recovery(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url, retry_schedule_s=[0.1, 0.1, 0.1]), engine)
    webhook_receiver.respond_with(503, 503)
    _, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    for _ in range(100):
        dispatcher.deliver_due()
        if delivery(engine, delivery_id).status != "pending":
            break
        threading.Event().wait(0.05)

    assert delivery(engine, delivery_id).status == "succeeded"
    assert [r.status for r in webhook_receiver.requests] == [503, 503, 200]


def test_gone_disables_the_delivery(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)
    webhook_receiver.respond_with(410)
    _, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    dispatcher.deliver_due()
    assert dispatcher.deliver_due(later(10**6)) == 0

    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("disabled", 1, None)
    assert len(webhook_receiver.requests) == 1


@pytest.mark.parametrize("status", [302, 308])
def test_a_redirect_disables_the_delivery_instead_of_retrying_it(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver, status: int
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)
    webhook_receiver.respond_with(status)
    _, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    dispatcher.deliver_due()
    # A day later nothing is due: the redirect was not put on the retry schedule.
    assert dispatcher.deliver_due(later(24 * 3600 + 60)) == 0

    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("disabled", 1, None)
    [attempt] = attempts(engine, delivery_id)
    assert (attempt.status_code, attempt.succeeded) == (status, False)
    assert attempt.error is not None and "redirects are not followed" in attempt.error
    assert len(webhook_receiver.requests) == 1
    # Once the URL is fixed, the owner replays it.
    assert redeliver(engine, delivery_id).status == "pending"


def test_exhausted_after_the_schedule_then_redelivered(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url, retry_schedule_s=[1, 1]), engine)
    webhook_receiver.default_status = 500
    _, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    for step in range(5):
        dispatcher.deliver_due(later(step * 10))
    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts) == ("exhausted", 3)  # the first try and two retries
    assert len(webhook_receiver.requests) == 3

    with pytest.raises(NotFoundError):
        redeliver(engine, delivery_id, tenant="someone-else")
    webhook_receiver.default_status = 200
    reset = redeliver(engine, delivery_id)
    assert (reset.status, reset.attempts, reset.last_error) == ("pending", 0, None)
    assert delivery(engine, delivery_id) == reset
    with pytest.raises(DeliveryNotReplayableError):
        redeliver(engine, delivery_id)

    assert dispatcher.deliver_due() == 1
    assert delivery(engine, delivery_id).status == "succeeded"
    requests = webhook_receiver.requests
    assert len(requests) == 4
    assert requests[-1].verified
    assert len({r.webhook_id for r in requests}) == 1
    assert len(attempts(engine, delivery_id)) == 4  # the log keeps the earlier round
    with pytest.raises(DeliveryNotReplayableError, match="succeeded"):
        redeliver(engine, delivery_id)
    with pytest.raises(NotFoundError):
        redeliver(engine, "no-such-delivery")


def test_network_error_is_retried(tmp_path: Path, db_url: str, engine: Engine) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)
    # Nothing listens on this port.
    _, [delivery_id] = finish_job(
        engine, webhook_url=f"http://127.0.0.1:{free_port()}/hooks", webhook_secret=reference_secret()
    )

    dispatcher.deliver_due()

    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts) == ("pending", 1)
    [attempt] = attempts(engine, delivery_id)
    assert attempt.status_code is None
    assert attempt.error is not None and "Connect" in attempt.error


def test_long_summary_is_replaced_by_its_url(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    settings = make_settings(
        tmp_path, db_url, max_inline_summary_bytes=100, public_base_url="https://condense.example/"
    )
    job_id, _ = finish_job(
        engine,
        summary="word " * 100,
        webhook_url=webhook_receiver.url,
        webhook_secret=webhook_receiver.secret,
    )

    Dispatcher(settings, engine).deliver_due()

    [request] = webhook_receiver.requests
    assert request.verified
    assert request.payload["data"]["summary"] is None
    assert request.payload["data"]["summary_url"] == f"https://condense.example/v1/summaries/{job_id}"


def test_default_secrets_sign_during_a_rotation(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    old = webhook_receiver.secret
    settings = make_settings(tmp_path, db_url, webhook_secrets=[reference_secret(), old])
    finish_job(engine, webhook_url=webhook_receiver.url)  # no secret of its own

    Dispatcher(settings, engine).deliver_due()

    [request] = webhook_receiver.requests
    assert request.verified, request.verify_error  # a receiver still on the old secret accepts it
    assert len(request.headers["webhook-signature"].split(" ")) == 2


def test_webhook_without_any_secret_is_disabled(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    _, [delivery_id] = finish_job(engine, webhook_url=webhook_receiver.url)

    Dispatcher(make_settings(tmp_path, db_url), engine).deliver_due()

    assert delivery(engine, delivery_id).status == "disabled"
    assert "secret" in (delivery(engine, delivery_id).last_error or "")
    assert webhook_receiver.requests == []


def test_event_of_a_deleted_job_is_disabled_not_retried(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    job_id, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )
    with engine.begin() as conn:
        conn.execute(delete(JOBS).where(JOBS.c.id == job_id))
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)

    assert dispatcher.deliver_due() == 1
    assert dispatcher.deliver_due(later(10**6)) == 0

    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts) == ("disabled", 1)
    assert row.last_error == "the job of this event no longer exists"
    assert webhook_receiver.requests == []


def test_batch_completed_event(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    batch_id = new_id()
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(BATCHES),
            [
                {
                    "id": batch_id,
                    "tenant": "acme",
                    "status": "completed",
                    "total": 3,
                    "params": {},
                    "metadata": {"run": 7},
                    "webhook_url": webhook_receiver.url,
                    "webhook_secret": webhook_receiver.secret,
                    "email": None,
                    "cancel_requested": False,
                    "created_at": now,
                    "finished_at": now,
                }
            ],
        )
    finish_job(engine, batch_id=batch_id)
    finish_job(engine, batch_id=batch_id)
    finish_job(engine, status="failed", batch_id=batch_id)
    with engine.begin() as conn:
        batch = BatchRecord.from_row(
            conn.execute(select(BATCHES).where(BATCHES.c.id == batch_id)).mappings().one()
        )
        [delivery_id] = record_batch_event(conn, batch, BATCH_COMPLETED)

    Dispatcher(make_settings(tmp_path, db_url), engine).deliver_due()

    [request] = webhook_receiver.requests
    assert request.verified
    assert request.payload["type"] == "batch.completed"
    data = request.payload["data"]
    assert (data["id"], data["total"], data["metadata"]) == (batch_id, 3, {"run": 7})
    assert data["counts"] == {"failed": 1, "succeeded": 2}
    assert delivery(engine, delivery_id).batch_id == batch_id


def test_two_notifiers_never_send_the_same_attempt(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    settings = make_settings(tmp_path, db_url)
    other_engine = make_engine(settings.database)
    ids = [
        finish_job(engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret)[1][0]
        for _ in range(8)
    ]
    dispatchers = [Dispatcher(settings, engine), Dispatcher(settings, other_engine)] * 2
    barrier = threading.Barrier(len(dispatchers))
    sent: list[int] = []

    def sweep(dispatcher: Dispatcher) -> None:
        barrier.wait()
        sent.append(dispatcher.deliver_due())

    threads = [threading.Thread(target=sweep, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    other_engine.dispose()

    assert sum(sent) == len(ids)
    assert sorted(r.webhook_id for r in webhook_receiver.requests) == sorted(
        delivery(engine, i).event_id for i in ids
    )
    assert all(len(attempts(engine, i)) == 1 for i in ids)


def test_deliver_one_only_sends_what_is_due(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    dispatcher = Dispatcher(make_settings(tmp_path, db_url), engine)
    webhook_receiver.respond_with(500)
    _, [delivery_id] = finish_job(
        engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
    )

    assert dispatcher.deliver_one(delivery_id) is True
    # A nudge for a delivery that waits for its retry slot does nothing.
    assert dispatcher.deliver_one(delivery_id) is False
    assert dispatcher.deliver_one("no-such-delivery") is False
    assert len(webhook_receiver.requests) == 1


# -- URL safety at connect time ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://10.0.0.1/hooks", "https://169.254.169.254/latest/meta-data", "https://[::ffff:10.0.0.1]/"],
)
def test_private_and_metadata_targets_are_refused(
    tmp_path: Path, db_url: str, engine: Engine, url: str
) -> None:
    with pytest.raises(UnsafeUrlError):
        check_webhook_url(url, allow_loopback=False, allow_private=False, http_allowlist=[])
    _, [delivery_id] = finish_job(engine, webhook_url=url, webhook_secret=reference_secret())

    Dispatcher(make_settings(tmp_path, db_url, allow_loopback=False), engine).deliver_due()

    row = delivery(engine, delivery_id)
    assert row.status == "disabled"
    assert row.last_error is not None and "address" in row.last_error
    [attempt] = attempts(engine, delivery_id)
    assert attempt.status_code is None


def test_a_name_resolving_to_loopback_is_refused_unless_allowed(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    url = f"http://localhost:{webhook_receiver.port}/hooks"
    with pytest.raises(UnsafeUrlError, match="loopback"):
        check_webhook_url(url, allow_loopback=False, allow_private=False, http_allowlist=["localhost"])
    _, [refused] = finish_job(engine, webhook_url=url, webhook_secret=webhook_receiver.secret)

    Dispatcher(make_settings(tmp_path, db_url, allow_loopback=False), engine).deliver_due()

    assert delivery(engine, refused).status == "disabled"
    assert webhook_receiver.requests == []

    # Allowed, the same name reaches the receiver, connected to the address that was checked.
    _, [allowed] = finish_job(engine, webhook_url=url, webhook_secret=webhook_receiver.secret)
    Dispatcher(make_settings(tmp_path, db_url, allow_loopback=True), engine).deliver_due()
    assert delivery(engine, allowed).status == "succeeded"
    [request] = webhook_receiver.requests
    assert request.verified
    assert request.headers["host"] == f"localhost:{webhook_receiver.port}"


def test_plain_http_needs_the_allowlist() -> None:
    with pytest.raises(UnsafeUrlError, match="https"):
        check_webhook_url(
            "http://93.184.216.34/hooks", allow_loopback=False, allow_private=False, http_allowlist=[]
        )
    check_webhook_url(
        "http://93.184.216.34/hooks",
        allow_loopback=False,
        allow_private=False,
        http_allowlist=["93.184.216.34"],
    )
    check_webhook_url(
        "https://93.184.216.34/hooks", allow_loopback=False, allow_private=False, http_allowlist=[]
    )


# -- email ------------------------------------------------------------------------------------


def email_settings(tmp_path: Path, db_url: str, server: SmtpServer, **notifier: Any) -> Settings:
    smtp = SmtpSettings(host=server.host, port=server.port, timeout_s=5, from_address="notify@condense.test")
    return make_settings(tmp_path, db_url, smtp=smtp, **notifier)


def test_email_is_multipart_with_the_summary(
    tmp_path: Path, db_url: str, engine: Engine, smtp_server: SmtpServer
) -> None:
    job_id, [delivery_id] = finish_job(engine, summary="Cats sleep.\n\nDogs <bark>.", email="ada@example.com")

    assert Dispatcher(email_settings(tmp_path, db_url, smtp_server), engine).deliver_due() == 1

    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.mail_from == "notify@condense.test"
    message = received.message
    assert message["Subject"] == f"Summary ready: {job_id}"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    text = plain.get_content()
    assert job_id in text and "Status: succeeded" in text and "Dogs <bark>." in text
    html = rich.get_content()
    assert job_id in html and "Dogs &lt;bark&gt;." in html
    assert message["Message-ID"] == f"<{delivery(engine, delivery_id).event_id}@condense>"
    assert delivery(engine, delivery_id).status == "succeeded"


def test_long_summary_email_shows_its_start_and_a_link(
    tmp_path: Path, db_url: str, engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = email_settings(
        tmp_path, db_url, smtp_server, max_inline_summary_bytes=40, public_base_url="https://c.example"
    )
    job_id, _ = finish_job(engine, summary="alpha beta gamma delta " * 20, email="ada@example.com")

    Dispatcher(settings, engine).deliver_due()

    [received] = smtp_server.wait_for(1)
    plain = received.message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert f"https://c.example/v1/summaries/{job_id}" in text
    assert "alpha beta gamma delta" in text
    assert text.count("alpha") < 20


def test_email_reaches_a_server_that_was_down_at_first(
    tmp_path: Path, db_url: str, engine: Engine, smtp_server: SmtpServer
) -> None:
    dispatcher = Dispatcher(email_settings(tmp_path, db_url, smtp_server, retry_schedule_s=[30, 60]), engine)
    smtp_server.stop()
    _, [delivery_id] = finish_job(engine, status="canceled", email="ada@example.com")

    start = utcnow()
    assert dispatcher.deliver_due(start) == 1
    row = delivery(engine, delivery_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error

    smtp_server.start()
    assert dispatcher.deliver_due(start + timedelta(seconds=30)) == 1
    [received] = smtp_server.wait_for(1)
    assert received.message["Subject"].startswith("Summary canceled: ")
    assert delivery(engine, delivery_id).status == "succeeded"
    # A success is final: no second email, whatever the clock says.
    assert dispatcher.deliver_due(start + timedelta(days=2)) == 0
    assert dispatcher.deliver_one(delivery_id) is False
    assert len(smtp_server.messages) == 1
    assert [a.succeeded for a in attempts(engine, delivery_id)] == [False, True]


def test_job_with_webhook_and_email_gets_both(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver, smtp_server: SmtpServer
) -> None:
    _, ids = finish_job(
        engine,
        webhook_url=webhook_receiver.url,
        webhook_secret=webhook_receiver.secret,
        email="ada@example.com",
    )

    assert Dispatcher(email_settings(tmp_path, db_url, smtp_server), engine).deliver_due() == 2

    assert len(ids) == 2
    assert {delivery(engine, i).channel for i in ids} == {"webhook", "email"}
    assert len(webhook_receiver.requests) == 1
    assert len(smtp_server.wait_for(1)) == 1
