"""What a notification says: the event envelope and the job or batch object inside it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schema.api import job_to_public
from schema.settings import NotifierSettings
from schema.store.records import BatchCounts, BatchRecord, JobRecord


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def summary_url(settings: NotifierSettings, job_id: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/summaries/{job_id}"


def batch_url(settings: NotifierSettings, batch_id: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/batches/{batch_id}"


def summary_is_inline(settings: NotifierSettings, summary: str | None) -> bool:
    return summary is None or len(summary.encode("utf-8")) <= settings.max_inline_summary_bytes


def job_data(settings: NotifierSettings, job: JobRecord) -> dict[str, Any]:
    """The job as the API shows it, with a long summary swapped for a link to it.

    ``summary_url`` is always present (null when the summary is inline) so receivers see one
    shape; a summary over ``max_inline_summary_bytes`` would make every delivery, and every
    retry, that much larger.
    """
    data: dict[str, Any] = job_to_public(job).model_dump(mode="json")
    data["summary_url"] = None
    if not summary_is_inline(settings, data.get("summary")):
        data["summary"] = None
        data["summary_url"] = summary_url(settings, data["id"])
    return data


def batch_data(settings: NotifierSettings, batch: BatchRecord, counts: BatchCounts) -> dict[str, Any]:
    """A batch with how many of its jobs ended in each status (statuses with none left out)."""
    by_status = {status: count for status, count in counts.as_dict().items() if status != "total" and count}
    return {
        "id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "counts": dict(sorted(by_status.items())),
        "metadata": batch.metadata or {},
        "created_at": _iso(batch.created_at),
        "finished_at": _iso(batch.finished_at),
        "url": batch_url(settings, batch.id),
    }


def test_data() -> dict[str, Any]:
    """The data of a ``webhook.test`` event: nothing happened, the delivery itself is the point."""
    return {
        "test": True,
        "message": "a test event from condense: this endpoint receives and can verify events",
    }


def envelope(event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload shape. ``occurred_at`` is when the event happened, so it
    stays the same on every retry (the header timestamp is the attempt's)."""
    return {"type": event_type, "timestamp": _iso(occurred_at), "data": dict(data)}


def encode(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
