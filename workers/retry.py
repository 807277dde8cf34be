"""The worker's one retry policy: when a job gets another try, and when it has had enough.

A decision is data: the store writes ``retry_at`` on the job and an outbox row that becomes due
then, and the worker moves on. Nothing sleeps while it holds claimed jobs or unacknowledged
offsets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from schema.settings import RetryPolicySettings


@dataclass(frozen=True)
class RetryDecision:
    retry_at: datetime | None
    """When to try again; None means give up and fail the job."""


@dataclass(frozen=True)
class RetryPolicy:
    max_claims: int
    """Claims without an outcome (a worker died mid-job) before the job is failed as poison."""
    max_retries: int
    """Retryable failures (out of memory, a device hiccup) before the job is failed."""
    base_delay_s: float
    max_delay_s: float
    jitter: bool = True

    @classmethod
    def from_settings(cls, settings: RetryPolicySettings) -> RetryPolicy:
        return cls(settings.max_claims, settings.max_retries, settings.base_delay_s, settings.max_delay_s)

    def delay_s(self, retries_so_far: int) -> float:
        """Exponential backoff, capped; jitter spreads jobs that failed together."""
        delay = min(self.max_delay_s, self.base_delay_s * 2**retries_so_far)
        if self.jitter:
            delay *= 0.5 + random.random() / 2  # noqa: S311 - timing jitter, not security
        return delay

    def after_failure(self, retries_so_far: int, now: datetime) -> RetryDecision:
        """What to do after a retryable failure of a job that was already retried ``retries_so_far`` times."""
        if retries_so_far >= self.max_retries:
            return RetryDecision(None)
        return RetryDecision(now + timedelta(seconds=self.delay_s(retries_so_far)))
