"""Where the workers and the notifier meet on Celery: the app factory and the task names.

Kafka carries summarization work; Celery's own broker carries only follow-up tasks
(notification deliveries and periodic sweeps). Packages refer to each other's tasks by name,
never by import.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SqlaTransport
from sqlalchemy.engine import make_url

DELIVER_NOTIFICATION = "condense.notifier.deliver"
SWEEP_NOTIFICATIONS = "condense.notifier.sweep"
NOTIFY_QUEUE = "condense.notify"


class _QuietSqlaTransport(SqlaTransport):
    """kombu's SQLAlchemy transport polling its tables every ``polling_interval`` seconds.

    Its default, one query a second, is most of what an idle worker process costs, and it cannot
    be changed through transport options: the transport hands those to create_engine(), which
    refuses unknown keys.
    """

    polling_interval = 10.0


_QUIET_SQLA = "condense-sqla-quiet"
TRANSPORT_ALIASES[_QUIET_SQLA] = f"{__name__}:_QuietSqlaTransport"


def make_celery(broker_url: str, name: str, *, consumes: bool = True) -> Celery:
    """A Celery app on ``broker_url`` (``celery.broker_url`` of the settings).

    ``consumes=False`` is for a process that only sends tasks (its worker listens on a queue
    nothing is sent to): on the SQLAlchemy broker its polling slows from once a second to once
    every ten.
    """
    if broker_url.startswith("sqla+") and make_url(broker_url[5:]).get_backend_name() == "sqlite":
        database = make_url(broker_url[5:]).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    if not consumes and broker_url.startswith("sqla+"):
        broker_url = f"{_QUIET_SQLA}+{broker_url.removeprefix('sqla+')}"
    app = Celery(name, broker=broker_url, set_as_current=False)
    # kombu's SQLAlchemy transport hands transport options to create_engine(), which refuses
    # polling_interval; other brokers get a short poll so nudges arrive quickly.
    sqla = broker_url.startswith(("sqla+", f"{_QUIET_SQLA}+"))
    transport_options = {} if sqla else {"polling_interval": 0.2 if consumes else 10.0}
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
