"""The notifier as it runs: a real Celery worker on the embedded SQLite broker."""

from __future__ import annotations

from pathlib import Path

from celery.contrib.testing.worker import start_worker
from sqlalchemy import Engine

from common.celeryapp import DELIVER_NOTIFICATION, NOTIFY_QUEUE, SWEEP_NOTIFICATIONS
from notifier.app import create_celery_app
from tests.fixtures.notifier import delivery, finish_job, make_settings
from tests.fixtures.receivers import WebhookReceiver


def test_a_nudged_delivery_and_a_sweep_go_through_a_real_worker(
    tmp_path: Path, db_url: str, engine: Engine, webhook_receiver: WebhookReceiver
) -> None:
    settings = make_settings(tmp_path, db_url, sweep_interval_s=0.5)
    app = create_celery_app(settings)
    assert DELIVER_NOTIFICATION in app.tasks and SWEEP_NOTIFICATIONS in app.tasks

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
        _, [nudged] = finish_job(
            engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
        )
        # What a worker does after its commit.
        app.send_task(DELIVER_NOTIFICATION, args=[nudged], queue=NOTIFY_QUEUE)
        [first] = webhook_receiver.wait_for(1, timeout_s=30)
        assert first.verified, first.verify_error

        _, [swept] = finish_job(
            engine, webhook_url=webhook_receiver.url, webhook_secret=webhook_receiver.secret
        )
        # What beat sends every sweep_interval_s.
        app.send_task(SWEEP_NOTIFICATIONS, queue=NOTIFY_QUEUE)
        second = webhook_receiver.wait_for(2, timeout_s=30)[1]
        assert second.verified, second.verify_error

    assert delivery(engine, nudged).status == "succeeded"
    assert delivery(engine, swept).status == "succeeded"
    assert first.webhook_id == delivery(engine, nudged).event_id
    assert second.webhook_id == delivery(engine, swept).event_id
    assert app.conf.beat_schedule["sweep-notifications"]["schedule"] == 0.5
