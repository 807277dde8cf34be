"""Rows for tests that write jobs straight into the database."""

from __future__ import annotations

from typing import Any

from schema.jobs import new_job_row


def job_values(**overrides: Any) -> dict[str, Any]:
    """A queued async job's column values, for a Core INSERT into ``summary_jobs``."""
    return new_job_row(**{"tenant": "acme", "text": "text", **overrides})
