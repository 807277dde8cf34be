"""What the outbox cannot cover: jobs a broker lost, jobs of vanished workers, expired results.

Each repair is its own short transaction and is callable alone; ``sweep`` runs all three.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from schema.db import make_engine
from schema.models import Lane, utcnow
from schema.settings import Settings
from schema.store import sweeps
from schema.store.sweeps import Purged

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    requeued: int
    purged: Purged


class Sweeper:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database)
        self.topic_for = {
            Lane.INTERACTIVE.value: settings.kafka.topic,
            Lane.BULK.value: settings.kafka.bulk_topic,
        }

    def republish_queued(
        self, now: datetime | None = None, *, lost_before: datetime | None = None
    ) -> list[str]:
        """Publish again queued jobs that have waited longer than ``relay.requeue_after_s``, and,
        after the broker lost data at ``lost_before``, every job queued before then."""
        now = now or utcnow()
        before = now - timedelta(seconds=self.settings.relay.requeue_after_s)
        if lost_before is not None:
            before = max(before, lost_before)
        with self.engine.begin() as conn:
            ids = sweeps.republish_queued(
                conn, before, self.settings.relay.sweep_limit, now=now, topic_for=self.topic_for
            )
        if ids:
            log.info("sweeper republished %d queued jobs", len(ids))
        return ids

    def requeue_abandoned(self, now: datetime | None = None) -> list[str]:
        """Hand back running jobs untouched for ``relay.running_timeout_s``."""
        now = now or utcnow()
        stale_before = now - timedelta(seconds=self.settings.relay.running_timeout_s)
        with self.engine.begin() as conn:
            ids = sweeps.requeue_abandoned(
                conn, stale_before, self.settings.relay.sweep_limit, now=now, topic_for=self.topic_for
            )
        if ids:
            log.info("sweeper requeued %d abandoned running jobs", len(ids))
        return ids

    def purge_expired(self, now: datetime | None = None) -> Purged:
        """Delete results older than ``database.retention_days``; nothing while that is 0."""
        retention_days = self.settings.database.retention_days
        if retention_days <= 0:
            return Purged()
        cutoff = (now or utcnow()) - timedelta(days=retention_days)
        with self.engine.begin() as conn:
            purged = sweeps.purge_expired(conn, cutoff, self.settings.relay.sweep_limit)
        if purged.jobs or purged.batches:
            log.info("sweeper purged %d jobs and %d batches past retention", purged.jobs, purged.batches)
        return purged

    def sweep(self, now: datetime | None = None, *, lost_before: datetime | None = None) -> SweepReport:
        now = now or utcnow()
        republished = self.republish_queued(now, lost_before=lost_before)
        requeued = self.requeue_abandoned(now)
        return SweepReport(
            republished=len(republished), requeued=len(requeued), purged=self.purge_expired(now)
        )
