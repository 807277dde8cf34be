"""Where the workers and the notifier meet on Celery: the app factory and the task names.

Kafka carries summarization work; Celery's own broker carries only follow-up tasks
(notification deliveries and periodic sweeps). Packages refer to each other's tasks by name,
never by import.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from sqlalchemy.engine import make_url

DELIVER_NOTIFICATION = "condense.notifier.deliver"
SWEEP_NOTIFICATIONS = "condense.notifier.sweep"
NOTIFY_QUEUE = "condense.notify"


def make_celery(broker_url: str, name: str) -> Celery:
    """A Celery app on ``broker_url`` (``celery.broker_url`` of the settings)."""
    if broker_url.startswith("sqla+") and make_url(broker_url[5:]).get_backend_name() == "sqlite":
        database = make_url(broker_url[5:]).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
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
