"""Beat sends a sweep only when a delivery is due, so an idle notifier sends no empty sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery.beat import ScheduleEntry
from sqlalchemy import Engine

from common.celeryapp import SWEEP_NOTIFICATIONS
from notifier.app import anything_due, create_celery_app, sweep_scheduler
from tests.fixtures.notifier import finish_job, make_settings


def test_a_sweep_is_sent_only_when_a_delivery_is_due(tmp_path: Path, db_url: str, engine: Engine) -> None:
    settings = make_settings(tmp_path, db_url)
    app = create_celery_app(settings)
    sent: list[str] = []

    class Recording(sweep_scheduler(settings)):  # type: ignore[misc]
        def apply_async(
            self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **_: Any
        ) -> None:
            sent.append(entry.task)

    scheduler = Recording(app=app, schedule_filename=str(tmp_path / "beat-schedule"), lazy=True)
    sweep = ScheduleEntry(name="sweep-notifications", task=SWEEP_NOTIFICATIONS, schedule=5.0, app=app)
    other = ScheduleEntry(name="other", task="condense.other", schedule=5.0, app=app)
    try:
        assert not anything_due(engine)
        scheduler.apply_entry(sweep)
        scheduler.apply_entry(other)
        assert sent == ["condense.other"], "an empty sweep went out; other entries are never held back"

        finish_job(engine, webhook_url="https://hooks.example.com/in", webhook_secret="whsec_" + "A" * 32)
        assert anything_due(engine)
        scheduler.apply_entry(sweep)
        assert sent == ["condense.other", SWEEP_NOTIFICATIONS]
    finally:
        scheduler.close()


def test_the_app_uses_the_scheduler(tmp_path: Path, db_url: str) -> None:
    app = create_celery_app(make_settings(tmp_path, db_url))

    assert app.conf.beat_scheduler.__name__ == "SweepWhenDueScheduler"
