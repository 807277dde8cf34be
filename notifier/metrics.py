"""Prometheus metrics of the notifier, registered once at import in the default registry."""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Histogram

Outcome = Literal["succeeded", "retry", "exhausted", "disabled"]

NOTIFICATIONS = Counter(
    "condense_notifications_total",
    "Delivery attempts by channel and what came of them.",
    ["channel", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "condense_notification_attempt_seconds",
    "Time one delivery attempt took, by channel.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)


def count(channel: str, outcome: Outcome) -> None:
    NOTIFICATIONS.labels(channel=channel, outcome=outcome).inc()


def observe_attempt(channel: str, seconds: float) -> None:
    ATTEMPT_SECONDS.labels(channel=channel).observe(seconds)
