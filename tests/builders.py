"""Rows for tests that write jobs straight into the database."""

from __future__ import annotations

from typing import Any

from schema.store.jobs import new_job


def job_values(**overrides: Any) -> dict[str, Any]:
    """A queued async job's column values, for a Core INSERT into ``summary_jobs``."""
    return new_job(**{"tenant": "acme", "text": "text", **overrides}).as_row()
