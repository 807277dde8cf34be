"""Typed, frozen views of the rows the store hands out. Callers never see row mappings.

Each record has ``from_row`` (a Core row mapping, as selected from its table) and the store
builds them; nothing else needs to know column names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self


class _Record:
    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Self:
        names = cls._columns()
        return cls(**{name: row[column] for name, column in names.items()})

    @classmethod
    def _columns(cls) -> dict[str, str]:
        """Field name -> column name; ``metadata`` is the one column whose attribute differs."""
        cached: dict[str, str] | None = cls.__dict__.get("_column_map")
        if cached is None:
            cached = {f.name: f.name for f in fields(cls)}  # type: ignore[arg-type]
            cls._column_map = cached  # type: ignore[attr-defined]
        return cached


@dataclass(frozen=True, slots=True)
class JobRecord(_Record):
    id: str
    tenant: str
    status: str
    route: str
    lane: str
    input_text: str
    input_tokens: int
    params: dict[str, Any]
    summary: str | None
    language: str | None
    variant: str | None
    error_code: str | None
    error_message: str | None
    attempts: int
    retries: int
    retry_at: datetime | None
    progress_done: int
    progress_total: int
    model: dict[str, Any] | None
    timings: dict[str, Any] | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    request_hash: str | None
    webhook_url: str | None
    webhook_secret: str | None
    email: str | None
    batch_id: str | None
    custom_id: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Last, with a default, so that records built before the column existed still construct.
    pii_mode: str | None = None
    cached: bool = False
    cache_hit_of: str | None = None
    similarity: float | None = None

    @property
    def is_final(self) -> bool:
        from schema.models import FINAL_STATUSES, JobStatus

        return JobStatus(self.status) in FINAL_STATUSES

    def as_row(self) -> dict[str, Any]:
        """Every column, for INSERT ... VALUES (executemany needs the same keys in each row)."""
        return {name: getattr(self, name) for name in self._columns()}


@dataclass(frozen=True, slots=True)
class BatchRecord(_Record):
    id: str
    tenant: str
    status: str
    total: int
    params: dict[str, Any]
    metadata: dict[str, Any]
    webhook_url: str | None
    webhook_secret: str | None
    email: str | None
    cancel_requested: bool
    created_at: datetime
    finished_at: datetime | None

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._columns()}


@dataclass(frozen=True, slots=True)
class BatchCounts:
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running + self.succeeded + self.failed + self.canceled

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "queued": self.queued,
            "running": self.running,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "canceled": self.canceled,
        }


@dataclass(frozen=True, slots=True)
class DeliveryRecord(_Record):
    id: str
    tenant: str
    job_id: str | None
    batch_id: str | None
    event_type: str
    channel: str
    target: str
    secret: str | None
    event_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord(_Record):
    id: int
    delivery_id: str
    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    succeeded: bool
