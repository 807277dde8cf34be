"""Drift gauges, recomputed by the relay every ``governance.drift.interval_s``.

The relay is the component for it: it already runs a periodic sweep against the database, there is
one per deployment (or a few, all computing the same figures from the same rows), and it holds no
model, so reading two windows of job_stats never competes with inference or request handling.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine

from common.metrics import DRIFT_KS, DRIFT_KS_PVALUE, DRIFT_MOVED, DRIFT_PSI, DRIFT_WINDOW_JOBS
from schema.drift import ModelDrift
from schema.settings import DriftSettings
from schema.store import drift as drift_store

log = logging.getLogger(__name__)


def windows(
    settings: DriftSettings, now: datetime
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(reference, current): the current window ends now, the reference ends where it starts."""
    current_start = now - timedelta(seconds=settings.window_s)
    return (current_start - timedelta(seconds=settings.reference_s), current_start), (current_start, now)


def export(report: list[ModelDrift]) -> None:
    for gauge in (DRIFT_PSI, DRIFT_KS, DRIFT_KS_PVALUE, DRIFT_MOVED, DRIFT_WINDOW_JOBS):
        # A model or statistic gone from the windows must not keep its last value forever.
        gauge.clear()
    for model in report:
        DRIFT_WINDOW_JOBS.labels(model=model.model_key, window="reference").set(model.reference_jobs)
        DRIFT_WINDOW_JOBS.labels(model=model.model_key, window="current").set(model.current_jobs)
        for stat in model.stats:
            labels = {"model": model.model_key, "statistic": stat.statistic}
            DRIFT_PSI.labels(**labels).set(stat.psi)
            DRIFT_MOVED.labels(**labels).set(1 if stat.moved else 0)
            if stat.ks_statistic is not None and stat.ks_pvalue is not None:
                DRIFT_KS.labels(**labels).set(stat.ks_statistic)
                DRIFT_KS_PVALUE.labels(**labels).set(stat.ks_pvalue)


class DriftMonitor:
    def __init__(self, settings: DriftSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.last_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.last_at is None or (now - self.last_at).total_seconds() >= self.settings.interval_s

    def update(self, now: datetime) -> list[ModelDrift]:
        reference, current = windows(self.settings, now)
        with self.engine.begin() as conn:
            drift_store.backfill(conn, reference[0])
        with self.engine.connect() as conn:
            report = drift_store.drift_report(
                conn,
                reference=reference,
                current=current,
                psi_threshold=self.settings.psi_threshold,
                ks_alpha=self.settings.ks_alpha,
                min_jobs=self.settings.min_jobs,
            )
        export(report)
        self.last_at = now
        for model in report:
            if model.moved:
                log.warning("drift on %s: %s moved", model.model_key, ", ".join(model.moved))
        return report
