"""The job_stats rows drift windows are computed from: written with a job's result, read by window."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from schema.drift import JobStats, ModelDrift, compare
from schema.models import job_stats_table

_STATS = job_stats_table


def insert_stats(conn: Connection, stats: list[JobStats]) -> None:
    """Idempotent: a job finished again after a lost commit keeps its first row."""
    if not stats:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(_STATS).on_conflict_do_nothing(index_elements=["job_id"]), [s.as_row() for s in stats]
    )


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
