"""Durable submits: condense's gateway against a plain FastAPI endpoint calling Celery ``.delay()``.

Both run as one uvicorn process on this machine, measured one after the other in the same run with
the same load (64 keep-alive clients posting the same long text). condense writes each job and its
outbox row to PostgreSQL (group commit) while its relay publishes the ids to Kafka in a separate
process; the baseline publishes the whole text to Redis. Afterwards every accepted condense job is
counted in the database, so the rate is of durable accepts only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import redis
from sqlalchemy import create_engine, func, select

from benchmarks.common import print_table
from benchmarks.loadgen import LoadResult, build_request, run_load
from benchmarks.stack import postgres_database
from condense.stack import Stack, free_port, wait_for_http
from schema.db import sync_url
from schema.models import SummaryJob

REDIS_URL = "redis://127.0.0.1:6379/15"


def long_text(words: int) -> str:
    base = "The relay publishes committed job ids while workers pull batches and store summaries. "
    return (base * (words // 12 + 1))[: words * 7]


def _load(port: int, body: dict[str, object], clients: int, warmup_s: float, duration_s: float) -> LoadResult:
    request = build_request("127.0.0.1", port, "/v1/summaries", body)
    asyncio.run(run_load("127.0.0.1", port, lambda _i: request, clients=clients, duration_s=warmup_s))
    return asyncio.run(
        run_load("127.0.0.1", port, lambda _i: request, clients=clients, duration_s=duration_s)
    )


def measure_condense(
    workdir: Path, body: dict[str, object], clients: int, warmup_s: float, duration_s: float
) -> tuple[LoadResult, int]:
    with postgres_database() as url:
        port = free_port()
        env = {
            "CONDENSE_DATABASE__URL": url,
            "CONDENSE_DATA_DIR": str(workdir),
            "CONDENSE_SUMMARIZER__CACHE_DIR": str(Path("var/models").resolve()),
            "CONDENSE_LOGGING__LEVEL": "WARNING",
        }
        with Stack(workdir, env) as stack:
            stack.broker()
            stack.condense("gateway", "gateway", "--port", str(port))
            stack.condense("relay", "relay")
            stack.wait_ready(port)
            result = _load(port, body, clients, warmup_s, duration_s)
        engine = create_engine(sync_url(url))
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(SummaryJob)).scalar_one()
        engine.dispose()
    return result, stored


def measure_celery(
    workdir: Path, body: dict[str, object], clients: int, warmup_s: float, duration_s: float
) -> LoadResult:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    port = free_port()
    with Stack(workdir, {}) as stack:
        stack.start(
            "celery-baseline", [sys.executable, "-m", "benchmarks.celery_baseline", str(port), REDIS_URL]
        )
        if not wait_for_http(f"http://127.0.0.1:{port}/docs", 60):
            raise RuntimeError("the Celery baseline did not start")
        result = _load(port, body, clients, warmup_s, duration_s)
    client.flushdb()
    return result


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--words", type=int, default=2_000, help="words of each submitted text")
    args = parser.parse_args(argv)
    body: dict[str, object] = {"text": long_text(args.words), "mode": "async"}
    with tempfile.TemporaryDirectory(prefix="condense-bench-") as tmp:
        workdir = Path(tmp)
        ours, stored = measure_condense(workdir, body, args.clients, args.warmup_s, args.duration_s)
        theirs = measure_celery(workdir, body, args.clients, args.warmup_s, args.duration_s)
    accepted = ours.statuses.get(202, 0)
    rows = [
        ["submit path", "accepted/s", "p50 ms", "p99 ms", "non-2xx"],
        [
            "condense (PostgreSQL group commit + outbox, relay to Kafka)",
            f"{ours.rate:,.0f}",
            f"{ours.p50_ms:.1f}",
            f"{ours.percentile_ms(0.99):.1f}",
            str(sum(n for s, n in ours.statuses.items() if s >= 300)),
        ],
        [
            "FastAPI + Celery .delay() on Redis",
            f"{theirs.rate:,.0f}",
            f"{theirs.p50_ms:.1f}",
            f"{theirs.percentile_ms(0.99):.1f}",
            str(sum(n for s, n in theirs.statuses.items() if s >= 300)),
        ],
        ["ratio condense / Celery", f"{ours.rate / theirs.rate:.2f}x" if theirs.rate else "n/a", "", "", ""],
    ]
    print_table(f"Submit throughput, {args.clients} clients, {args.words}-word texts", rows)
    print(f"durability: {stored} jobs stored in PostgreSQL for {accepted} measured + warm-up 202 answers")
    return rows


if __name__ == "__main__":
    main()
