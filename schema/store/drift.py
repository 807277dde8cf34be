"""The job_stats rows drift windows are computed from: written with a job's result, read by window."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection, and_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from schema.drift import JobStats, ModelDrift, compare, job_stats
from schema.models import JobStatus, job_stats_table, jobs_table

_STATS = job_stats_table


def insert_stats(conn: Connection, stats: list[JobStats]) -> None:
    """Idempotent: a job finished again after a lost commit keeps its first row."""
    if not stats:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(_STATS).on_conflict_do_nothing(index_elements=["job_id"]), [s.as_row() for s in stats]
    )


def backfill(conn: Connection, since: datetime, *, limit: int = 2_000) -> int:
    """Stats for succeeded jobs finished since ``since`` that have none: the gateway's sync answers
    (kept off the request path on purpose) and any job whose worker could not compute them. No
    tokenizer here, so their unknown-token share stays NULL."""
    jobs = jobs_table
    # Where jobs name a variant (a column of its own), drift is per variant.
    variant = jobs.c.get("variant")
    missing = (
        select(
            *([variant.label("variant")] if variant is not None else []),
            jobs.c.id,
            jobs.c.input_text,
            jobs.c.summary,
            jobs.c.input_tokens,
            jobs.c.language,
            jobs.c.params,
            jobs.c.model,
            jobs.c.finished_at,
        )
        .select_from(jobs.outerjoin(_STATS, _STATS.c.job_id == jobs.c.id))
        .where(
            and_(
                _STATS.c.job_id.is_(None),
                jobs.c.status == JobStatus.SUCCEEDED.value,
                jobs.c.summary.is_not(None),
                jobs.c.finished_at >= since,
            )
        )
        .order_by(jobs.c.finished_at)
        .limit(limit)
    )
    stats = [
        job_stats(
            job_id=row.id,
            model_key=str(row._mapping.get("variant") or (row.model or {}).get("name") or "unknown"),
            finished_at=row.finished_at,
            text=row.input_text,
            summary=row.summary,
            input_tokens=row.input_tokens or 0,
            language=row.language,
            unknown_token_share=None,
            params=row.params or {},
        )
        for row in conn.execute(missing)
    ]
    insert_stats(conn, stats)
    return len(stats)


def window(
    conn: Connection, start: datetime, end: datetime, *, model_key: str | None = None
) -> dict[str, list[JobStats]]:
    """Stats of jobs finished in [start, end), by model key."""
    query = select(_STATS).where(_STATS.c.finished_at >= start, _STATS.c.finished_at < end)
    if model_key is not None:
        query = query.where(_STATS.c.model_key == model_key)
    grouped: dict[str, list[JobStats]] = defaultdict(list)
    for row in conn.execute(query).mappings():
        grouped[row["model_key"]].append(JobStats(**{name: row[name] for name in JobStats.__slots__}))
    return dict(grouped)


def drift_report(
    conn: Connection,
    *,
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
    psi_threshold: float,
    ks_alpha: float,
    min_jobs: int,
    model_key: str | None = None,
) -> list[ModelDrift]:
    ref = window(conn, *reference, model_key=model_key)
    cur = window(conn, *current, model_key=model_key)
    return [
        compare(
            key,
            ref.get(key, []),
            cur.get(key, []),
            psi_threshold=psi_threshold,
            ks_alpha=ks_alpha,
            min_jobs=min_jobs,
        )
        for key in sorted(set(ref) | set(cur))
    ]
