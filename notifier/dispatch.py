"""Claiming due deliveries, attempting them, and recording what happened.

The database holds the whole retry state (see :mod:`schema.store.deliveries`): a pending
delivery is due when ``next_attempt_at`` has passed. To attempt one, a process first *claims* it,
which pushes ``next_attempt_at`` forward by a lease; only the process that claimed it sends, so
two notifier processes (or a nudge racing a sweep) never send the same attempt. When the attempt
ends, the result is written under the same guard, and ``next_attempt_at`` moves to the next slot
of the retry schedule. A process that dies mid-attempt leaves the lease to run out, after which
the delivery is simply due again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from notifier import email, metrics, payloads, signing, webhook
from notifier.errors import DeliveryImpossibleError, MissingSecretError, NotifierError
from schema.models import Channel, DeliveryStatus, utcnow
from schema.settings import Settings
from schema.store import deliveries
from schema.store.deliveries import DeliveryClaim
from schema.store.events import BATCH_EVENT_TYPES, WEBHOOK_TEST
from schema.store.records import BatchRecord, DeliveryRecord, JobRecord

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 2_000


@dataclass(frozen=True)
class _Result:
    succeeded: bool
    permanent: bool = False
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


class Dispatcher:
    """Delivers notifications from the ``notification_deliveries`` table.

    Plain methods, no Celery: the notifier's tasks call them, and so can tests and scripts.
    ``now`` arguments let a caller move the clock (the retry schedule is counted from it).
    """

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.notifier = settings.notifier
        self.engine = engine

    # -- public -------------------------------------------------------------------------------

    def deliver_due(self, now: datetime | None = None) -> int:
        """Attempt every delivery due at ``now`` (default: the current time); return how many.

        At most ``sweep_max_deliveries`` are taken on, ``max_parallel_deliveries`` at a time.
        Each is claimed just before its attempt, so a long queue never outlives its leases.
        """
        moment = now or utcnow()
        with self.engine.connect() as conn:
            ids = deliveries.due_ids(conn, moment, self.notifier.sweep_max_deliveries)
        if not ids:
            return 0
        if len(ids) == 1:
            return int(self._deliver_logged(ids[0], now))
        workers = min(self.notifier.max_parallel_deliveries, len(ids))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver") as pool:
            return sum(pool.map(lambda delivery_id: self._deliver_logged(delivery_id, now), ids))

    def deliver_one(self, delivery_id: str, now: datetime | None = None) -> bool:
        """Attempt one delivery if it is pending and due; return whether this call attempted it.

        False means nothing was sent: the delivery is unknown, finished, not yet due, or being
        attempted by someone else.
        """
        claim = self._claim(delivery_id, now or utcnow())
        if claim is None:
            return False
        self._finish(claim, self._attempt(claim), now)
        return True

    # -- claiming -----------------------------------------------------------------------------

    def _deliver_logged(self, delivery_id: str, now: datetime | None) -> bool:
        try:
            return self.deliver_one(delivery_id, now)
        except Exception:
            # One broken delivery must not stop the sweep; its lease runs out and it is retried.
            log.exception("delivery %s failed unexpectedly", delivery_id)
            return False

    def _claim(self, delivery_id: str, moment: datetime) -> DeliveryClaim | None:
        lease_until = moment + timedelta(seconds=self.notifier.claim_lease_s)
        with self.engine.begin() as conn:
            return deliveries.claim(conn, delivery_id, moment, lease_until)

    # -- attempting ---------------------------------------------------------------------------

    def _data(self, claim: DeliveryClaim) -> dict[str, Any]:
        if claim.delivery.event_type == WEBHOOK_TEST:
            return payloads.test_data()
        subject = claim.subject
        if isinstance(subject, BatchRecord):
            return payloads.batch_data(self.notifier, subject, claim.batch_counts)
        if isinstance(subject, JobRecord):
            return payloads.job_data(self.notifier, subject)
        what = "batch" if claim.delivery.event_type in BATCH_EVENT_TYPES else "job"
        raise DeliveryImpossibleError(f"the {what} of this event no longer exists")

    def _secrets(self, delivery: DeliveryRecord) -> Sequence[str]:
        own = (delivery.secret or "").split()
        if own:
            return own
        defaults = [secret.get_secret_value() for secret in self.notifier.webhook_secrets]
        if not defaults:
            raise MissingSecretError("the webhook has no secret and no default secret is configured")
        return defaults

    def _send_webhook(self, claim: DeliveryClaim) -> tuple[int | None, float]:
        delivery = claim.delivery
        body = payloads.encode(payloads.envelope(delivery.event_type, delivery.created_at, self._data(claim)))
        headers = signing.sign_headers(self._secrets(delivery), delivery.event_id, body)
        response = webhook.post(self.notifier, delivery.target, body, headers)
        return response.status_code, response.latency_ms

    def _send_email(self, claim: DeliveryClaim) -> tuple[int | None, float]:
        delivery = claim.delivery
        message = email.build_message(
            self.notifier,
            event_type=delivery.event_type,
            event_id=delivery.event_id,
            recipient=delivery.target,
            data=self._data(claim),
            full_summary=claim.subject.summary if isinstance(claim.subject, JobRecord) else None,
        )
        return None, asyncio.run(email.send(self.notifier.smtp, message))

    def _attempt(self, claim: DeliveryClaim) -> _Result:
        channel = claim.delivery.channel
        started = time.perf_counter()
        try:
            if channel == Channel.WEBHOOK.value:
                status_code, latency_ms = self._send_webhook(claim)
            elif channel == Channel.EMAIL.value:
                status_code, latency_ms = self._send_email(claim)
            else:
                raise DeliveryImpossibleError(f"unknown channel {channel!r}")
        except NotifierError as exc:
            return _Result(
                succeeded=False,
                permanent=not exc.retryable,
                status_code=exc.status_code,
                latency_ms=exc.latency_ms,
                error=exc.message[:_MAX_ERROR_CHARS],
            )
        finally:
            metrics.observe_attempt(channel, time.perf_counter() - started)
        return _Result(succeeded=True, status_code=status_code, latency_ms=latency_ms)

    # -- recording ----------------------------------------------------------------------------

    def _finish(self, claim: DeliveryClaim, result: _Result, now: datetime | None) -> None:
        delivery = claim.delivery
        moment = now or utcnow()
        attempts = delivery.attempts + 1
        schedule = self.notifier.retry_schedule_s
        next_attempt_at: datetime | None = None
        outcome: metrics.Outcome
        if result.succeeded:
            status, outcome = DeliveryStatus.SUCCEEDED, "succeeded"
        elif result.permanent:
            status, outcome = DeliveryStatus.DISABLED, "disabled"
        elif attempts <= len(schedule):
            status, outcome = DeliveryStatus.PENDING, "retry"
            next_attempt_at = moment + timedelta(seconds=schedule[attempts - 1])
        else:
            status, outcome = DeliveryStatus.EXHAUSTED, "exhausted"
        with self.engine.begin() as conn:
            recorded = deliveries.record_attempt(
                conn,
                delivery,
                claim.lease_until,
                attempted_at=moment,
                succeeded=result.succeeded,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
                status=status,
                next_attempt_at=next_attempt_at,
            )
        if not recorded:
            # The lease ran out during the attempt and another process took the delivery over;
            # its own result stands.
            log.warning("delivery %s: lease lost before its result was recorded", delivery.id)
            return
        metrics.count(delivery.channel, outcome)
        level = logging.INFO if result.succeeded else logging.WARNING
        log.log(
            level,
            "delivery %s (%s %s, attempt %d): %s%s",
            delivery.id,
            delivery.channel,
            delivery.event_type,
            attempts,
            outcome,
            f" - {result.error}" if result.error else "",
        )
