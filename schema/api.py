"""Pydantic models of the public API, shared by the gateway (answers) and the notifier (payloads)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from common.pii import PiiMode
from schema.models import JobStatus
from schema.storable import json_problem, text_problem
from schema.store.records import JobRecord

_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookTarget(_Strict):
    url: str = Field(min_length=1, max_length=2048)
    secret: str | None = Field(
        default=None, description="whsec_<base64> signing secret; the tenant's default when omitted."
    )

    @field_validator("url")
    @classmethod
    def _storable_url(cls, value: str) -> str:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is not None and (not _WHSEC.fullmatch(value)):
            raise ValueError("must be a Standard Webhooks secret of the form whsec_<base64>")
        return value


class SummaryJobCreate(_Strict):
    text: str = Field(description="The document to summarize.")
    params: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["auto", "sync", "async"] = "auto"
    webhook: WebhookTarget | None = None
    email: EmailStr | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    pii: PiiMode | None = Field(
        default=None,
        description="How personal data in this document is treated: off, mask_summary, mask_stored, "
        "reject; the tenant's default when omitted.",
    )
    # Below half a second no answer can arrive in time: a floor instead of a certain 504.
    timeout_s: float | None = Field(
        default=None, ge=0.5, allow_inf_nan=False, description="Deadline of a sync answer, in seconds."
    )

    @field_validator("text")
    @classmethod
    def _storable_text(cls, value: str) -> str:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        # Control characters alone are no more a document than spaces are; both paths refuse them.
        if not any(ch.isprintable() and not ch.isspace() for ch in value):
            raise ValueError("has nothing to summarize (only whitespace or control characters)")
        return value

    @field_validator("params", "metadata")
    @classmethod
    def _storable_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = json_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Progress(BaseModel):
    done: int
    total: int


class JobError(BaseModel):
    code: str
    message: str


class SummaryJobPublic(BaseModel):
    id: str
    status: JobStatus
    route: Literal["sync", "async"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: str | None
    language: str | None = Field(
        default=None, description="BCP 47 code of the document's language as detected, 'und' when unsure."
    )
    error: JobError | None
    progress: Progress
    model: dict[str, Any] | None = Field(
        description="What wrote the summary: name, sha256, backend, quantization, kind, device, "
        "engine_version, settings_sha256, and with a LoRA adapter its name (adapter) and the SHA-256 of "
        "its files (adapter_sha256); null until the job has run."
    )
    variant: str | None = Field(
        default=None,
        description="The model variant the job was routed to; null on jobs from before variants.",
    )
    params: dict[str, Any]
    metadata: dict[str, Any]
    batch_id: str | None = None
    custom_id: str | None = None
    attempts: int = 0
    pii: str | None = Field(default=None, description="The PII mode the job ran under.")
    cached: bool = Field(default=False, description="Answered from the result cache, not by the engine.")
    cache_hit_of: str | None = Field(
        default=None, description="The job whose summary a cached answer reuses."
    )
    similarity: float | None = Field(
        default=None,
        description="SimHash similarity of a cached answer's text to its source: 1.0 for an exact hit "
        "(or a near duplicate with the same words), below for other near duplicates.",
    )


class SummaryJobList(BaseModel):
    data: list[SummaryJobPublic]
    next_cursor: str | None


class BatchCounts(BaseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class BatchPublic(BaseModel):
    id: str
    status: Literal["in_progress", "completed", "canceled"]
    counts: BatchCounts
    created_at: datetime
    finished_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelVariantPublic(BaseModel):
    """One model variant as ``GET /v1/models`` lists it; model fields are null until it has loaded."""

    name: str
    weight: float = Field(description="Configured weight.")
    share: float = Field(description="Fraction of the jobs routed by weight that go here.")
    status: Literal["loading", "ready", "error"]
    loaded: bool
    error: str | None = None
    kind: str | None = Field(default=None, description="extractive, abstractive or causal (instruct).")
    model: str = Field(description="The model's name once loaded, else the summarizer.model setting.")
    sha256: str | None = Field(default=None, description="SHA-256 of the model's weights.")
    backend: str
    quantization: str | None = None
    device: str | None = None
    engine_version: str | None = None
    adapters: dict[str, str] = Field(default_factory=dict, description="Adapter name to its SHA-256.")


class ModelVariantList(BaseModel):
    data: list[ModelVariantPublic]


def job_to_public(job: JobRecord) -> SummaryJobPublic:
    error = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return SummaryJobPublic(
        id=job.id,
        status=JobStatus(job.status),
        route=job.route,  # type: ignore[arg-type]
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        summary=job.summary,
        language=job.language,
        error=error,
        progress=Progress(done=job.progress_done or 0, total=job.progress_total or 0),
        model=job.model,
        variant=job.variant,
        params=job.params or {},
        metadata=job.metadata or {},
        batch_id=job.batch_id,
        custom_id=job.custom_id,
        attempts=job.attempts or 0,
        pii=job.pii_mode,
        cached=bool(job.cached),
        cache_hit_of=job.cache_hit_of,
        similarity=job.similarity,
    )


class BatchList(BaseModel):
    data: list[BatchPublic]
    next_cursor: str | None


class DeliveryAttemptPublic(BaseModel):
    attempted_at: str = Field(description="ISO 8601 time of the attempt.")
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came.")
    latency_ms: float | None
    error: str | None
    succeeded: bool


class DeliveryPublic(BaseModel):
    id: str
    event_id: str
    event_type: str
    channel: Literal["webhook", "email"]
    target: str
    status: Literal["pending", "succeeded", "exhausted", "disabled"]
    attempts: list[DeliveryAttemptPublic]
    next_attempt_at: str | None = Field(description="ISO 8601 time of the next try of a pending delivery.")
    created_at: str = Field(description="ISO 8601 time the delivery was recorded.")


class DeliveryList(BaseModel):
    data: list[DeliveryPublic]


class Redelivery(BaseModel):
    id: str
    status: Literal["pending"]
