"""One retry policy object instead of retry numbers scattered across the code."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from schema.settings import RetryStrategySettings


@dataclass(frozen=True)
class Attempt:
    number: int
    """1-based."""
    delay_s: float
    """How long to wait before the next attempt, should this one fail."""
    is_last: bool


@dataclass(frozen=True)
class RetryStrategy:
    max_attempts: int
    base_delay_s: float
    max_delay_s: float
    jitter: bool = True

    @classmethod
    def from_settings(cls, settings: RetryStrategySettings) -> RetryStrategy:
        return cls(settings.max_attempts, settings.base_delay_s, settings.max_delay_s)

    def delay_s(self, attempt_number: int) -> float:
        """Exponential backoff, capped; jitter spreads workers that failed together."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt_number - 1))
        if self.jitter:
            delay *= 0.5 + random.random() / 2  # noqa: S311 - timing jitter, not security
        return delay

    def attempts(self, *, forever: bool = False) -> Iterator[Attempt]:
        counter = itertools.count(1) if forever else range(1, self.max_attempts + 1)
        for number in counter:
            yield Attempt(number, self.delay_s(number), is_last=not forever and number == self.max_attempts)
