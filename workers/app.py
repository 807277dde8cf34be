"""The worker process: a Celery worker whose boot step runs the Kafka batch consumer.

The model is loaded once, in the worker's main process, before the consumer starts; the pool is
``solo`` so nothing forks after CUDA is initialised. Celery's own broker carries no summarization
work: the consumer pulls job ids from Kafka, and Celery only sends follow-up tasks (notification
nudges) by name to the notifier.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery, bootsteps

from common.celeryapp import DELIVER_NOTIFICATION, NOTIFY_QUEUE, make_celery
from common.metrics import (
    BATCH_DOCUMENTS,
    BATCH_TOKENS,
    INFERENCE_SECONDS,
    JOB_FAILURES,
    JOBS,
    QUEUE_WAIT_SECONDS,
)
from common.opsserver import start_ops_server
from schema.db import database_status, make_engine
from schema.settings import Settings
from summarizer import Summarizer, load_summarizer
from summarizer.runtime import settle_heap
from workers.consumer import BatchConsumer, store_probe
from workers.execution import BatchOutcome, JobExecutor
from workers.retry import RetryPolicy

log = logging.getLogger(__name__)

WORKER_QUEUE = "condense.worker"


def record_metrics(outcome: BatchOutcome) -> None:
    for status, ids in (
        ("succeeded", outcome.succeeded),
        ("failed", outcome.failed),
        ("canceled", outcome.canceled),
    ):
        if ids:
            JOBS.labels(status=status, route="async").inc(len(ids))
    for code in outcome.failure_codes:
        JOB_FAILURES.labels(code=code).inc()
    if outcome.documents:
        BATCH_DOCUMENTS.observe(outcome.documents)
        BATCH_TOKENS.observe(outcome.tokens)
        INFERENCE_SECONDS.labels(path="async").observe(outcome.inference_s)
    for wait_s in outcome.queue_wait_s:
        QUEUE_WAIT_SECONDS.observe(wait_s)


def build_consumer(settings: Settings, summarizer: Summarizer, celery_app: Celery | None) -> BatchConsumer:
    engine = make_engine(settings.database)
    kafka = settings.kafka
    executor = JobExecutor(
        engine,
        summarizer,
        policy=RetryPolicy.from_settings(settings.worker.retry),
        topic_for={"interactive": kafka.topic, "bulk": kafka.bulk_topic},
        heartbeat_s=settings.worker.heartbeat_s,
        cache_rules=settings.cache,
    )

    def after_batch(outcome: BatchOutcome) -> None:
        record_metrics(outcome)
        if celery_app is None:
            return
        for delivery_id in outcome.delivery_ids:
            try:
                celery_app.send_task(DELIVER_NOTIFICATION, args=[delivery_id], queue=NOTIFY_QUEUE)
            except Exception as exc:
                # The notifier's periodic sweep sends it anyway; the nudge only saves latency.
                log.warning("could not nudge the notifier for %s: %s", delivery_id, exc)

    return BatchConsumer(
        settings,
        executor,
        on_outcome=after_batch,
        probe=store_probe(engine, heartbeat_s=settings.worker.heartbeat_s),
    )


def create_celery_app(settings: Settings) -> Celery:
    app = make_celery(settings.celery.broker_url, "condense-worker")

    class KafkaConsumerStep(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self._stop = threading.Event()
            self._thread: threading.Thread | None = None

        def start(self, worker: Any) -> None:
            summarizer = load_summarizer(settings.summarizer)
            log.info("model loaded: %s", summarizer.info.as_dict())
            consumer = build_consumer(settings, summarizer, app)
            settle_heap()
            self._thread = threading.Thread(
                target=consumer.run, args=(self._stop,), name="kafka-batch-consumer", daemon=True
            )
            self._thread.start()
            thread = self._thread

            def readiness() -> dict[str, str]:
                return {
                    "model": "ok",
                    "consumer": "ok" if thread.is_alive() else "stopped",
                    "broker": "ok" if consumer.connected else "connecting",
                    "db": database_status(consumer.executor.engine),
                }

            start_ops_server(settings.worker.metrics_port, readiness, settings.worker.metrics_host)

        def stop(self, worker: Any) -> None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=60)

    app.steps["worker"].add(KafkaConsumerStep)
    return app


def run(settings: Settings) -> int:
    app = create_celery_app(settings)
    worker = app.Worker(
        pool="solo",
        concurrency=1,
        queues=[WORKER_QUEUE],
        loglevel=settings.logging.level,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        quiet=settings.logging.format == "json",
        hostname=f"condense-worker-{os.getpid()}@{socket.gethostname()}",
    )
    worker.start()
    return int(worker.exitcode or 0)
