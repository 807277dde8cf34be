"""SQLAlchemy models. The job row is the source of truth; Kafka only carries job ids."""

from __future__ import annotations

import enum
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    PostgreSQL keeps the zone; SQLite stores text without one and hands back naive values, which
    would then fail to compare with aware ones. Values are normalised to UTC on the way in and
    marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}  # noqa: RUF012


def utcnow() -> datetime:
    return datetime.now(UTC)


_id_lock = threading.Lock()
_id_last_ms = 0
_id_counter = 0


def new_id() -> str:
    """A UUIDv7 string, monotonic within this process.

    Ids sort like creation times, which cursor pagination and the order of a batch's documents
    rely on. Within one millisecond a 12-bit counter (RFC 9562, method 1) keeps them increasing.
    """
    global _id_last_ms, _id_counter
    with _id_lock:
        unix_ms = time.time_ns() // 1_000_000
        if unix_ms <= _id_last_ms:
            _id_counter += 1
            if _id_counter > 0xFFF:
                _id_last_ms += 1
                _id_counter = 0
            unix_ms = _id_last_ms
        else:
            _id_counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _id_last_ms = unix_ms
        counter = _id_counter
    rand = int.from_bytes(os.urandom(8), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class Route(enum.StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class Lane(enum.StrEnum):
    """Interactive jobs are served before bulk (batch upload) work."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    EXHAUSTED = "exhausted"
    DISABLED = "disabled"


class Channel(enum.StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class SummaryJob(Base):
    __tablename__ = "summary_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    route: Mapped[str] = mapped_column(String(8), default=Route.ASYNC.value)
    lane: Mapped[str] = mapped_column(String(16), default=Lane.INTERACTIVE.value)
    input_text: Mapped[str] = mapped_column(Text)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    # BCP 47 code of the document's language as the engine detected it ("und" when unsure).
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    # The model variant chosen at submit (settings.variants); NULL on rows from before variants.
    variant: Mapped[str | None] = mapped_column(String(64), default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Retryable failures so far, and when the next try may start: a retry is stored, never slept on.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[datetime | None] = mapped_column(default=None)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    timings: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    webhook_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    batch_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("batches.id", ondelete="CASCADE"), default=None, index=True
    )
    custom_id: Mapped[str | None] = mapped_column(String(512), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # How personal data in this job is treated (common.pii.PiiMode); NULL on rows from before 0007.
    pii_mode: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Answered from the result cache (migration 0006): the job whose summary it reuses, and how
    # similar the texts were (1.0 for an exact hit, below for a near duplicate).
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cache_hit_of: Mapped[str | None] = mapped_column(String(36), default=None)
    similarity: Mapped[float | None] = mapped_column(default=None)

    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_summary_jobs_tenant_idempotency_key"),
        Index("ix_summary_jobs_tenant_id", "tenant", "id"),
        Index("ix_summary_jobs_status_updated_at", "status", "updated_at"),
    )


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    total: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    webhook_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_batches_tenant_id", "tenant", "id"),)


class OutboxEntry(Base):
    """A job id waiting to be published to Kafka; written in the job's own transaction."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    topic: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Not published before this time (a job's retry); NULL means at once.
    available_at: Mapped[datetime | None] = mapped_column(default=None)


class NotificationDelivery(Base):
    """One event to one destination; the next attempt time lives here, not in a broker."""

    __tablename__ = "notification_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    batch_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(String(255), default=None)
    event_id: Mapped[str] = mapped_column(String(64), default=lambda: f"msg_{new_id().replace('-', '')}")
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_notification_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        UniqueConstraint("event_id", name="uq_notification_deliveries_event_id"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("notification_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookEndpoint(Base):
    """A tenant's default webhook: jobs submitted without one are notified here."""

    __tablename__ = "webhook_endpoints"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantPiiPolicy(Base):
    """A tenant's default PII mode (common.pii.PiiMode); a job's own ``pii`` field wins over it."""

    __tablename__ = "tenant_pii_policies"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelAuditEvent(Base):
    """A model (or adapter) was loaded, changed, or failed its manifest check, by whom and with what."""

    __tablename__ = "model_audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(32))
    component: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(255))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    weights_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    previous_manifest_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class JobStats(Base):
    """Compact statistics of one finished job's input and output, the raw material of drift windows.

    Numbers and a language code only, never text: drift is computed from these rows alone.
    """

    __tablename__ = "job_stats"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The variant when a job names one, else the model name: drift is per model.
    model_key: Mapped[str] = mapped_column(String(255))
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)
    input_chars: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    # NULL where the model cannot tell (no unknown token in its vocabulary).
    unknown_token_share: Mapped[float | None] = mapped_column(Float, default=None)
    summary_chars: Mapped[int] = mapped_column(Integer)
    compression_ratio: Mapped[float] = mapped_column(Float)
    redundancy: Mapped[float] = mapped_column(Float)
    hit_length_limit: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (Index("ix_job_stats_model_key_finished_at", "model_key", "finished_at"),)


class ResultCacheEntry(Base):
    """A finished summary, found again by the hash of what decides it (text, params, model)."""

    __tablename__ = "result_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The tenant whose job wrote the entry (a purge removes its entries), and who may read it:
    # the tenant's name, or "*" under ``cache.scope: global``.
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    scope: Mapped[str] = mapped_column(String(128))
    model_key: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(36))
    params_hash: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    model: Mapped[dict[str, Any]] = mapped_column(default=dict)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_units: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    # 64-bit SimHash of the normalized text, stored signed (BIGINT has no unsigned form).
    simhash: Mapped[int | None] = mapped_column(BigInteger, default=None)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_hit_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_result_cache_scope_model_key_params_hash", "scope", "model_key", "params_hash"),
    )


class JobUsage(Base):
    """What one job cost, kept apart from the job row so that retention does not erase the bill."""

    __tablename__ = "job_usage"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    # UTC date (YYYY-MM-DD) the job ended: grouping by day is then the same on every database.
    day: Mapped[str] = mapped_column(String(10))
    model: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Output tokens of an abstractive model, words of an extractive one.
    output_units: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    engine_s: Mapped[float] = mapped_column(default=0.0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_job_usage_tenant_day", "tenant", "day"),)


class TenantLimits(Base):
    """A tenant's quotas; NULL means no limit of that kind."""

    __tablename__ = "tenant_limits"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    rps: Mapped[float | None] = mapped_column(default=None)
    burst: Mapped[int | None] = mapped_column(Integer, default=None)
    max_running: Mapped[int | None] = mapped_column(Integer, default=None)
    max_queued: Mapped[int | None] = mapped_column(Integer, default=None)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RateBucket(Base):
    """The token bucket of a tenant's request rate, shared by every gateway replica."""

    __tablename__ = "rate_buckets"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column()
    # Seconds since the epoch of the last refill; a float keeps the UPDATE's arithmetic portable.
    refilled_at: Mapped[float] = mapped_column()


# Typed handles for SQLAlchemy Core statements (``Model.__table__`` is typed as a bare FromClause).
jobs_table = cast(Table, SummaryJob.__table__)
batches_table = cast(Table, Batch.__table__)
outbox_table = cast(Table, OutboxEntry.__table__)
deliveries_table = cast(Table, NotificationDelivery.__table__)
attempts_table = cast(Table, DeliveryAttempt.__table__)
endpoints_table = cast(Table, WebhookEndpoint.__table__)
audit_table = cast(Table, ModelAuditEvent.__table__)
pii_policies_table = cast(Table, TenantPiiPolicy.__table__)
job_stats_table = cast(Table, JobStats.__table__)
result_cache_table = cast(Table, ResultCacheEntry.__table__)
usage_table = cast(Table, JobUsage.__table__)
limits_table = cast(Table, TenantLimits.__table__)
buckets_table = cast(Table, RateBucket.__table__)
