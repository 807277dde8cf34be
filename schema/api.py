"""Pydantic models of the public API, shared by the gateway (answers) and the notifier (payloads)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from schema.models import FINAL_STATUSES, JobStatus


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookTarget(_Strict):
    url: str = Field(min_length=1, max_length=2048)
    secret: str | None = Field(
        default=None, description="whsec_<base64> signing secret; the tenant's default when omitted."
    )

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret of the form whsec_<base64>")
        return value


class SummaryJobCreate(_Strict):
    text: str = Field(description="The document to summarize.")
    params: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["auto", "sync", "async"] = "auto"
    webhook: WebhookTarget | None = None
    email: EmailStr | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, description="Deadline of a sync answer.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
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
    error: JobError | None
    progress: Progress
    model: dict[str, Any] | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    batch_id: str | None = None
    custom_id: str | None = None
    attempts: int = 0


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


def job_to_public(row: Any) -> SummaryJobPublic:
    """Build the public view from a job row (an ORM object or a Core row mapping)."""

    def get(key: str) -> Any:
        return row.get(key) if isinstance(row, Mapping) else getattr(row, key, None)

    error = None
    if get("error_code"):
        error = JobError(code=get("error_code"), message=get("error_message") or "")
    metadata = get("metadata_")
    if metadata is None and isinstance(row, Mapping):
        metadata = row.get("metadata")
    return SummaryJobPublic(
        id=get("id"),
        status=JobStatus(get("status")),
        route=get("route"),
        created_at=get("created_at"),
        started_at=get("started_at"),
        finished_at=get("finished_at"),
        summary=get("summary"),
        error=error,
        progress=Progress(done=get("progress_done") or 0, total=get("progress_total") or 0),
        model=get("model"),
        params=get("params") or {},
        metadata=metadata or {},
        batch_id=get("batch_id"),
        custom_id=get("custom_id"),
        attempts=get("attempts") or 0,
    )


def is_final(status: str) -> bool:
    return JobStatus(status) in FINAL_STATUSES
