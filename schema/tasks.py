"""Where the workers and the notifier meet on Celery: the app factory and the task names.

Kafka carries summarization work; Celery's own broker carries only follow-up tasks
(notification deliveries and periodic sweeps). Packages refer to each other's tasks by name,
never by import.
"""

from __future__ import annotations

from celery import Celery

from schema.db import is_sqlite
from schema.settings import Settings

DELIVER_NOTIFICATION = "condense.notifier.deliver"
SWEEP_NOTIFICATIONS = "condense.notifier.sweep"
NOTIFY_QUEUE = "condense.notify"


def _sqla_broker_url(url: str) -> str:
    return url if url.startswith("sqla+") else f"sqla+{url}"


def make_celery(settings: Settings, name: str) -> Celery:
    broker_url = settings.celery.broker_url
    if broker_url.startswith("sqla+sqlite") or (broker_url.startswith("sqla+") and is_sqlite(broker_url[5:])):
        from pathlib import Path

        from sqlalchemy.engine import make_url

        database = make_url(broker_url[5:]).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        broker_url = _sqla_broker_url(broker_url)
    app = Celery(name, broker=broker_url, set_as_current=False)
    # kombu's SQLAlchemy transport hands transport options to create_engine(), which refuses
    # polling_interval; other brokers get a short poll so nudges arrive quickly.
    transport_options = {} if broker_url.startswith("sqla+") else {"polling_interval": 0.2}
    app.conf.update(
        task_default_queue=NOTIFY_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
