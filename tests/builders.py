"""Rows for tests that write jobs straight into the database."""

from __future__ import annotations

from typing import Any

from schema.models import JobStatus, Lane, new_id, utcnow


def job_values(**overrides: Any) -> dict[str, Any]:
    """A queued async job's column values, for a Core INSERT into ``summary_jobs``."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant": "acme",
        "status": JobStatus.QUEUED.value,
        "route": "async",
        "lane": Lane.INTERACTIVE.value,
        "input_text": "text",
        "input_tokens": 0,
        "params": {},
        "metadata": {},
        "attempts": 0,
        "progress_done": 0,
        "progress_total": 0,
        "cancel_requested": False,
        "batch_id": None,
        "custom_id": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
    }
    values.update(overrides)
    return values
