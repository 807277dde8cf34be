"""Usage accounting: one row per ended job, written in the transaction that ends it.

Kept apart from ``summary_jobs`` so that retention, which deletes old jobs, leaves the bill. A
cached job records its input and output like any other, with ``cached`` set and no engine time:
quotas on tokens count only what the engine ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common.metrics import count_usage
from schema.models import usage_table, utcnow
from schema.store.records import JobRecord

_USAGE = usage_table
GroupBy = Literal["day", "model"]


def output_units(summary: str | None) -> int:
    """Words of a summary: what an extractive budget counts, and what a caller without the
    model's tokenizer can tell of an abstractive one."""
    return len(summary.split()) if summary else 0


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_units: int = 0
    chunks: int = 0
    engine_s: float = 0.0
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_units": self.output_units,
            "chunks": self.chunks,
            "engine_s": round(self.engine_s, 6),
            "cached": self.cached,
        }


def of_job(job: JobRecord, *, output: int | None = None) -> Usage:
    """A job's usage from its row; ``output`` overrides the word count (tokens, when known)."""
    engine_s = float((job.timings or {}).get("total_s", 0.0)) if not job.cached else 0.0
    return Usage(
        input_tokens=job.input_tokens or 0,
        output_units=output if output is not None else output_units(job.summary),
        chunks=job.progress_total or 0,
        engine_s=engine_s,
        cached=job.cached,
    )


def model_name(job: JobRecord) -> str:
    return str((job.model or {}).get("name", "")) or "-"


def record(conn: Connection, ended: Iterable[tuple[JobRecord, Usage]]) -> None:
    """Record the usage of jobs that this transaction ended; a job already recorded is kept."""
    now = utcnow()
    rows = [
        {
            "job_id": job.id,
            "tenant": job.tenant,
            "day": day_of(job.finished_at or now),
            "model": model_name(job),
            "status": job.status,
            "input_tokens": usage.input_tokens,
            "output_units": usage.output_units,
            "chunks": usage.chunks,
            "engine_s": usage.engine_s,
            "cached": usage.cached,
            "created_at": now,
        }
        for job, usage in ended
    ]
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(_USAGE).on_conflict_do_nothing(index_elements=["job_id"]), rows)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    group: str | None
    jobs: int
    cached_jobs: int
    input_tokens: int
    output_units: int
    chunks: int
    engine_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "cached_jobs": self.cached_jobs,
            "input_tokens": self.input_tokens,
            "output_units": self.output_units,
            "chunks": self.chunks,
            "engine_s": round(self.engine_s, 6),
        }


def totals(
    conn: Connection,
    tenant: str,
    *,
    from_day: date | None = None,
    to_day: date | None = None,
    group_by: GroupBy | None = None,
) -> list[UsageTotals]:
    """The tenant's totals between two UTC days (both included), whole or grouped."""
    columns = [
        func.count(),
        func.coalesce(func.sum(_USAGE.c.cached.cast(type_=_USAGE.c.chunks.type)), 0),
        func.coalesce(func.sum(_USAGE.c.input_tokens), 0),
        func.coalesce(func.sum(_USAGE.c.output_units), 0),
        func.coalesce(func.sum(_USAGE.c.chunks), 0),
        func.coalesce(func.sum(_USAGE.c.engine_s), 0.0),
    ]
    key = {"day": _USAGE.c.day, "model": _USAGE.c.model}.get(group_by or "")
    query = select(*([key] if key is not None else []), *columns).where(_USAGE.c.tenant == tenant)
    if from_day is not None:
        query = query.where(_USAGE.c.day >= from_day.isoformat())
    if to_day is not None:
        query = query.where(_USAGE.c.day <= to_day.isoformat())
    if key is not None:
        query = query.group_by(key).order_by(key)
    found: list[UsageTotals] = []
    for row in conn.execute(query).all():
        values = list(row)
        group = str(values.pop(0)) if key is not None else None
        jobs, cached, tokens, output, chunks, seconds = values
        if key is None and not jobs:
            continue
        found.append(
            UsageTotals(group, int(jobs), int(cached), int(tokens), int(output), int(chunks), float(seconds))
        )
    return found


def engine_tokens_on(conn: Connection, tenant: str, day: str) -> int:
    """Input tokens the engine ran for the tenant on a UTC day (cache hits are free)."""
    found = conn.execute(
        select(func.coalesce(func.sum(_USAGE.c.input_tokens), 0)).where(
            _USAGE.c.tenant == tenant, _USAGE.c.day == day, _USAGE.c.cached.is_(False)
        )
    ).scalar_one()
    return int(found)


def count(job: JobRecord, usage: Usage) -> None:
    """The job's usage on the Prometheus counters (after its transaction committed)."""
    count_usage(
        job.tenant,
        model_name(job),
        input_tokens=usage.input_tokens,
        output_units=usage.output_units,
        engine_s=usage.engine_s,
        cached=usage.cached,
    )
