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
    ENGINE_TOKENS_PER_SECOND,
    INFERENCE_SECONDS,
    JOB_FAILURES,
    JOB_LATENCY,
    JOBS,
    QUEUE_WAIT_SECONDS,
    SUMMARY_WORDS,
)
from common.opsserver import start_ops_server
from schema.db import database_status, make_engine
from schema.dbwatch import SqliteWatch
from schema.settings import Settings
from schema.store.cache_front import RedisCacheFront
from schema.variants import variant_specs
from summarizer import Summarizer, SummarizerSettings, load_summarizer
from summarizer.runtime import settle_heap
from workers.consumer import BatchConsumer, store_probe
from workers.execution import BatchOutcome, JobExecutor
from workers.modelcheck import admit_model
from workers.retry import RetryPolicy
from workers.variants import VariantModels

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
    for ended in outcome.ended:
        if ended.error_code is not None:
            JOB_FAILURES.labels(code=ended.error_code, variant=ended.variant).inc()
        JOB_LATENCY.labels(variant=ended.variant, route=ended.route, status=ended.status).observe(
            ended.latency_s
        )
        if ended.summary_words is not None:
            SUMMARY_WORDS.labels(variant=ended.variant).observe(ended.summary_words)
    if outcome.documents:
        BATCH_DOCUMENTS.observe(outcome.documents)
        BATCH_TOKENS.observe(outcome.tokens)
        INFERENCE_SECONDS.labels(path="async").observe(outcome.inference_s)
    for run in outcome.runs:
        if run.tokens and run.inference_s > 0:
            ENGINE_TOKENS_PER_SECOND.labels(variant=run.variant, path="async").observe(
                run.tokens / run.inference_s
            )
    for wait_s in outcome.queue_wait_s:
        QUEUE_WAIT_SECONDS.observe(wait_s)


def build_consumer(
    settings: Settings, models: Summarizer | VariantModels, celery_app: Celery | None
) -> BatchConsumer:
    engine = make_engine(settings.database)
    kafka = settings.kafka
    executor = JobExecutor(
        engine,
        models,
        policy=RetryPolicy.from_settings(settings.worker.retry),
        topic_for={"interactive": kafka.topic, "bulk": kafka.bulk_topic},
        heartbeat_s=settings.worker.heartbeat_s,
        cache_rules=settings.cache,
        cache_front=(
            RedisCacheFront.from_settings(settings.cache)
            if settings.cache.enabled and settings.cache.backend == "redis"
            else None
        ),
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
        watch=SqliteWatch.for_url(settings.database.url),
    )


def create_celery_app(settings: Settings) -> Celery:
    # The worker only sends notifier nudges; the Celery worker it runs in just hosts the consumer.
    app = make_celery(settings.celery.broker_url, "condense-worker", consumes=False)

    class KafkaConsumerStep(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self._stop = threading.Event()
            self._thread: threading.Thread | None = None

        def start(self, worker: Any) -> None:
            # Every model is checked against its manifest as it loads, and the load is on record
            # (model audit); a mismatch fails that variant, and the start when it is the only one.
            audit_engine = make_engine(settings.database)

            def load_and_admit(summarizer_settings: SummarizerSettings) -> Summarizer:
                summarizer = load_summarizer(summarizer_settings)
                admit_model(audit_engine, summarizer, allow_mismatch=settings.worker.allow_model_mismatch)
                return summarizer

            # Loaded before the consumer joins the group, so the first batch does not wait on them.
            models = VariantModels.at_start(variant_specs(settings), load=load_and_admit)
            consumer = build_consumer(settings, models, app)
            settle_heap()
            self._thread = threading.Thread(
                target=consumer.run, args=(self._stop,), name="kafka-batch-consumer", daemon=True
            )
            self._thread.start()
            thread = self._thread

            def readiness() -> dict[str, str]:
                return {
                    # A variant that failed to load does not stop the others (its jobs are retried).
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
