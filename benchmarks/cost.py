"""Cost controls, side by side in one run.

    python -m benchmarks.cost            # 1,000 documents; about 5 minutes on 2 cores
    python -m benchmarks.cost --quick    # 200 documents, shorter submit runs

1. A batch where 50% of the documents repeat another exactly and 20% nearly (reflowed, punctuation
   changed, a one-word typo), run through the worker's executor on PostgreSQL with the real
   engine: wall time with the cache and near-duplicate reuse on, against off. Every exact hit is
   compared byte for byte with the fresh summary of the same text from the run without cache.
2. Submit throughput of a gateway (HTTP, async submits, PostgreSQL) with a tenant's rate quota
   on (the shared token bucket is updated on every request) against no quota, alternated.
3. Near-duplicate precision on adversarial pairs from real prose (tests/data): edits that keep
   the meaning against a changed number, name or negation, for SimHash alone and with the content
   check the cache applies.
4. What finding a cached summary costs the gateway (``gateway.result_cache.lookup``, in this
   process, PostgreSQL and Redis on 127.0.0.1): the database alone against the Redis front
   (``cache.backend: redis``), alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, create_engine, select, text

from benchmarks.common import MODEL_CACHE, median, peps_documents, percentile, print_table
from benchmarks.loadgen import LoadResult, build_request, run_load
from benchmarks.stack import postgres_database
from common import simhash as sh
from condense.stack import Stack, free_port
from gateway.auth import Authenticator
from gateway.endpoint_cache import EndpointCache
from gateway.ratelimit import QuotaGuard
from gateway.result_cache import lookup
from gateway.state import GatewayState
from gateway.submit import GroupCommitter
from schema.db import make_async_engine, sync_url
from schema.models import jobs_table
from schema.settings import CacheSettings, DatabaseSettings, Settings, SummarizerSettings, load_settings
from schema.store import cache, jobs, quotas
from schema.store.cache import CacheOptions, normalize_text
from schema.store.cache_front import AsyncRedisCacheFront
from summarizer import Summarizer, load_summarizer
from summarizer.testing import FakeSummarizer
from tests.fixtures.near_duplicates import CHANGED, SAME_MEANING, pairs, paragraphs, variants
from workers.execution import JobExecutor
from workers.retry import RetryPolicy

TOPICS = {"interactive": "bench.jobs", "bulk": "bench.jobs.bulk"}
POLICY = RetryPolicy(max_claims=3, max_retries=2, base_delay_s=1.0, max_delay_s=1.0, jitter=False)
WORKER_BATCH = 32


# -- 1. the batch ------------------------------------------------------------------------------


def corpus(size: int, seed: int = 11) -> list[tuple[str, str]]:
    """(text, kind) in upload order: 30% unique, 50% exact repeats, 20% near repeats."""
    rng = random.Random(seed)
    prose = paragraphs()
    unique_count = max(1, round(size * 0.3))
    uniques: list[str] = []
    seen: set[tuple[int, int]] = set()
    while len(uniques) < unique_count:
        first, second = rng.randrange(len(prose)), rng.randrange(len(prose))
        if first == second or (first, second) in seen:
            continue
        seen.add((first, second))
        uniques.append(prose[first] + "\n\n" + prose[second])
    docs = [(text, "unique") for text in uniques]
    for _ in range(round(size * 0.5)):
        docs.append((rng.choice(uniques), "exact"))
    while len(docs) < size:
        kept = [p for p in variants(rng.choice(uniques), rng) if p.kind in SAME_MEANING]
        docs.append((rng.choice(kept).variant, "near"))
    head, tail = docs[:unique_count], docs[unique_count:]
    rng.shuffle(tail)
    # Originals come first in about half the cases, repeats are spread over the rest of the batch.
    mixed = head + tail
    rng.shuffle(mixed)
    return mixed


def run_batch(
    url: str, summarizer: Summarizer, docs: list[tuple[str, str]], *, cache_on: bool
) -> tuple[float, dict[str, dict[str, object]]]:
    engine: Engine = create_engine(sync_url(url))
    params = {"near_duplicates": True} if cache_on else {}
    records = [
        jobs.new_job(tenant="bench", text=text, lane="bulk", params=dict(params)) for text, _kind in docs
    ]
    with engine.begin() as conn:
        jobs.insert_jobs(conn, records, topic_for=TOPICS)
    executor = JobExecutor(
        engine, summarizer, policy=POLICY, topic_for=TOPICS, cache_rules=CacheSettings() if cache_on else None
    )
    began = time.perf_counter()
    for start in range(0, len(records), WORKER_BATCH):
        executor.run([job.id for job in records[start : start + WORKER_BATCH]])
    seconds = time.perf_counter() - began
    with engine.connect() as conn:
        rows = {
            row["id"]: dict(row)
            for row in conn.execute(
                select(
                    jobs_table.c.id,
                    jobs_table.c.status,
                    jobs_table.c.summary,
                    jobs_table.c.cached,
                    jobs_table.c.cache_hit_of,
                    jobs_table.c.similarity,
                )
            ).mappings()
        }
    engine.dispose()
    return seconds, {job.id: {**rows[job.id], "text": job.input_text} for job in records}


def batch_rows(size: int) -> list[list[str]]:
    summarizer = load_summarizer(SummarizerSettings(cache_dir=str(MODEL_CACHE)))
    summarizer.summarize_batch(
        ["Warm-up sentence one. Warm-up sentence two."], summarizer.validate_params({})
    )
    docs = corpus(size)
    with postgres_database() as url:
        off_s, off = run_batch(url, summarizer, docs, cache_on=False)
    with postgres_database() as url:
        on_s, on = run_batch(url, summarizer, docs, cache_on=True)
    fresh = {str(row["text"]): row["summary"] for row in off.values()}
    by_id = {**on}
    # An exact hit reuses the summary of the same text; with near duplicates on, a repeat whose
    # original had not run yet may instead reuse a near variant's summary, which counts as near.
    exact = [
        row
        for row in on.values()
        if row["cached"]
        and normalize_text(str(by_id[str(row["cache_hit_of"])]["text"])) == normalize_text(str(row["text"]))
    ]
    near = [row for row in on.values() if row["cached"] and row not in exact]
    identical = sum(row["summary"] == fresh[str(row["text"])] for row in exact)
    near_identical = sum(row["summary"] == fresh[str(row["text"])] for row in near)
    failed = sum(row["status"] != "succeeded" for row in [*on.values(), *off.values()])
    variants_of: dict[str, set[object]] = {}
    for row in off.values():
        variants_of.setdefault(str(row["text"]), set()).add(row["summary"])
    unstable = sum(len(found) > 1 for found in variants_of.values())
    kinds = Counter(kind for _text, kind in docs)
    return [
        ["batch of documents", "value"],
        [
            "documents (unique / exact / near repeats)",
            f"{len(docs)} ({kinds['unique']} / {kinds['exact']} / {kinds['near']})",
        ],
        ["wall time, cache off", f"{off_s:.2f} s"],
        ["wall time, cache + near-dup on", f"{on_s:.2f} s"],
        ["speed-up (target >= 2x)", f"{off_s / on_s:.2f}x"],
        [
            "engine runs saved: exact hits / near-duplicate reuses",
            f"{len(exact)} / {len(near)}",
        ],
        ["exact hits byte-identical to a fresh summary", f"{identical} of {len(exact)}"],
        ["near reuses whose summary equals their own fresh one", f"{near_identical} of {len(near)}"],
        ["jobs not succeeded (both runs)", str(failed)],
        ["texts the engine summarized differently in the run without cache", str(unstable)],
    ]


# -- 2. submit throughput with quotas -------------------------------------------------------------


def _load(port: int, clients: int, duration_s: float) -> LoadResult:
    text = " ".join(["The relay publishes committed job ids while workers pull batches."] * 40)
    request = build_request("127.0.0.1", port, "/v1/summaries", {"text": text, "mode": "async"})
    return asyncio.run(
        run_load("127.0.0.1", port, lambda _i: request, clients=clients, duration_s=duration_s)
    )


def submit_rows(duration_s: float, rounds: int, clients: int) -> list[list[str]]:
    results: dict[str, list[LoadResult]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp, postgres_database() as url:
        workdir = Path(tmp)
        port = free_port()
        env = {
            "CONDENSE_DATABASE__URL": url,
            "CONDENSE_DATA_DIR": str(workdir),
            "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
            "CONDENSE_LOGGING__LEVEL": "WARNING",
        }
        engine = create_engine(sync_url(url))
        with Stack(workdir, env) as stack:
            stack.condense("gateway", "gateway", "--port", str(port))
            stack.wait_ready(port)
            _load(port, clients, 2.0)
            for round_index in range(rounds):
                # ABBA order: a system that drifts (rows piling up, a neighbour's load) favours neither.
                for mode in ("off", "on") if round_index % 2 == 0 else ("on", "off"):
                    with engine.begin() as conn:
                        if mode == "on":
                            # Never refuses, yet takes a token from the shared bucket on every submit.
                            quotas.set_limits(conn, "default", rps=100_000, burst=200_000)
                        else:
                            quotas.clear_limits(conn, "default")
                    # The gateway reads limits through a 5 s cache: let it see the change.
                    time.sleep(5.5)
                    results[mode].append(_load(port, clients, duration_s))
        engine.dispose()
    off_rate = median([r.rate for r in results["off"]])
    on_rate = median([r.rate for r in results["on"]])

    def p50(mode: str) -> float:
        return median([r.percentile_ms(0.5) for r in results[mode]])

    # Each round runs both modes back to back; the rate drifts between rounds by more than the
    # quota could cost (rows pile up, neighbours' load), so the ratio within a round is the measure.
    paired = [on.rate / off.rate for off, on in zip(results["off"], results["on"], strict=True)]
    refused = sum(r.statuses.get(429, 0) for r in results["on"])
    each = {mode: " / ".join(f"{r.rate:.0f}" for r in found) for mode, found in results.items()}
    return [
        [
            f"async submits, {clients} connections, {rounds} x {duration_s:g} s each",
            "quota off",
            "rate quota on",
        ],
        ["submits/s (median of rounds)", f"{off_rate:.0f}", f"{on_rate:.0f}"],
        ["submits/s of each round", each["off"], each["on"]],
        ["p50 latency", f"{p50('off'):.2f} ms", f"{p50('on'):.2f} ms"],
        [
            "p99 latency",
            f"{median([r.percentile_ms(0.99) for r in results['off']]):.2f} ms",
            f"{median([r.percentile_ms(0.99) for r in results['on']]):.2f} ms",
        ],
        ["on/off within each round", "", " / ".join(f"{ratio:.2f}" for ratio in paired)],
        ["throughput ratio on/off, median of rounds (target >= 0.95x)", "", f"{median(paired):.3f}x"],
        ["ratio of the medians", "", f"{on_rate / off_rate:.3f}x"],
        ["p50 added by the quota (target <= 1 ms)", "", f"{p50('on') - p50('off'):+.2f} ms"],
        ["refused (429)", "", str(refused)],
    ]


def quota_rows(calls: int) -> list[list[str]]:
    """What admitting one request costs, measured in this process on PostgreSQL: no limits (the
    cached lookup), the rate bucket, and every quota (bucket plus the counting queries)."""

    async def measure(url: str) -> dict[str, list[float]]:
        engine = make_async_engine(DatabaseSettings(url=url))
        guard = QuotaGuard(engine)
        timings: dict[str, list[float]] = {"none": [], "select1": [], "rps20": [], "rps": [], "all": []}
        sync_engine = create_engine(sync_url(url))
        for _ in range(2):
            for mode in timings:
                tenant = f"bench-{mode}"
                with sync_engine.begin() as conn:
                    # Limits the sequential calls never reach, so every call is admitted.
                    if mode == "rps20":
                        quotas.set_limits(conn, tenant, rps=20_000, burst=4)
                    elif mode == "rps":
                        quotas.set_limits(conn, tenant, rps=2_000, burst=4_000)
                    elif mode == "all":
                        quotas.set_limits(
                            conn, tenant, rps=2_000, burst=4_000, max_running=10**9, tokens_per_day=10**12
                        )
                for _call in range(calls // 2):
                    began = time.perf_counter()
                    if mode == "select1":
                        async with engine.connect() as conn:
                            await conn.execute(text("SELECT 1"))
                    else:
                        await guard.admit(tenant)
                    timings[mode].append(time.perf_counter() - began)
        sync_engine.dispose()
        await engine.dispose()
        return timings

    with postgres_database() as url:
        timings = asyncio.run(measure(url))
    base = median(timings["none"]) * 1000
    rows = [["admit one request (PostgreSQL, sequential)", "p50", "p99", "added p50 (target <= 1 ms)"]]
    for mode, label in (
        ("none", "tenant without limits"),
        ("select1", "for scale: one SELECT 1 round trip"),
        ("rps20", "rate bucket, burst 4 (a round trip per request)"),
        ("rps", "rate bucket, 2,000 rps (100 tokens per round trip)"),
        ("all", "rate 2,000 rps + running + tokens a day (counts read once a second)"),
    ):
        p50 = median(timings[mode]) * 1000
        rows.append(
            [
                label,
                f"{p50:.3f} ms",
                f"{percentile(timings[mode], 0.99) * 1000:.3f} ms",
                f"{p50 - base:+.3f} ms",
            ]
        )
    return rows


# -- 3. near-duplicate precision --------------------------------------------------------------------


def precision_rows() -> list[list[str]]:
    rules = CacheSettings()
    found = pairs()
    rows = [
        [
            "near-duplicate check on sample prose",
            "pairs",
            "SimHash <= 6 bits",
            f"SimHash <= {rules.near_duplicate_max_distance} bits",
            "cache's check (SimHash + content)",
        ]
    ]
    tally: dict[str, Counter[str]] = {}
    for pair in found:
        gap = sh.distance(
            sh.simhash(pair.original, shingle_words=rules.near_duplicate_shingle_words),
            sh.simhash(pair.variant, shingle_words=rules.near_duplicate_shingle_words),
        )
        fired = gap <= rules.near_duplicate_max_distance and sh.same_content(
            pair.original, pair.variant, max_changed_share=rules.near_duplicate_max_changed_words
        )
        counts = tally.setdefault(pair.kind, Counter())
        counts["pairs"] += 1
        counts["six"] += gap <= 6
        counts["threshold"] += gap <= rules.near_duplicate_max_distance
        counts["cache"] += fired
    for kind in [*sorted(SAME_MEANING), *sorted(CHANGED)]:
        counts = tally[kind]
        label = f"{kind} ({'same meaning' if kind in SAME_MEANING else 'changed meaning'})"
        rows.append(
            [label, str(counts["pairs"]), str(counts["six"]), str(counts["threshold"]), str(counts["cache"])]
        )

    def precision(key: str) -> str:
        good = sum(tally[k][key] for k in SAME_MEANING)
        bad = sum(tally[k][key] for k in CHANGED)
        return f"{good / (good + bad):.3f}" if good + bad else "-"

    def recall(key: str) -> str:
        return (
            f"{sum(tally[k][key] for k in SAME_MEANING) / sum(tally[k]['pairs'] for k in SAME_MEANING):.3f}"
        )

    rows.append(
        [
            "precision (reuse only on same meaning)",
            "",
            precision("six"),
            precision("threshold"),
            precision("cache"),
        ]
    )
    rows.append(["recall of same-meaning pairs", "", recall("six"), recall("threshold"), recall("cache")])
    prose = paragraphs()
    prints = [sh.simhash(text) for text in prose]
    nearest = min(sh.distance(a, b) for i, a in enumerate(prints) for b in prints[i + 1 :])
    gaps = sorted(sh.distance(a, b) for i, a in enumerate(prints) for b in prints[i + 1 :])
    rows.append(
        [
            f"unrelated paragraphs: nearest / 1st percentile distance ({len(prose)} paragraphs)",
            "",
            "",
            f"{nearest} / {percentile([float(g) for g in gaps], 0.01):.0f} bits",
            "",
        ]
    )
    return rows


# -- 4. cache-hit lookups: database against the Redis front ------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


def lookup_rows(calls: int, entries: int) -> list[list[str]]:
    """Sequential lookups of texts the cache holds, as the gateway makes them (key hashing, the
    Redis round trip or the database query, the write-back of a database hit to Redis)."""

    async def measure(url: str) -> dict[str, list[float]]:
        prefix = f"condense-bench:{uuid.uuid4().hex[:12]}"
        env = {
            "CONDENSE_DATABASE__URL": url,
            "CONDENSE_CACHE__REDIS_URL": REDIS_URL,
            "CONDENSE_CACHE__REDIS_KEY_PREFIX": prefix,
        }
        settings = load_settings(None, env)
        redis_settings = load_settings(None, {**env, "CONDENSE_CACHE__BACKEND": "redis"})
        engine = make_async_engine(settings.database)
        model = FakeSummarizer()

        def state_of(chosen: Settings, front: AsyncRedisCacheFront | None) -> GatewayState:
            committer = GroupCommitter(engine, topic_for=TOPICS, window_ms=1, max_rows=8)
            built = GatewayState(
                chosen, engine, committer, Authenticator(engine, open_allowed=True), EndpointCache(engine)
            )
            built.cache_front = front
            return built

        front = AsyncRedisCacheFront.from_settings(redis_settings.cache)
        states = {"database": state_of(settings, None), "redis": state_of(redis_settings, front)}
        # Real prose of a few kilobytes each: the key is a SHA-256 of the whole text.
        docs = [doc[:4_000] for doc in peps_documents()]
        texts = [f"{docs[i % len(docs)]}\n\n{i}" for i in range(entries)]
        hot = texts[:calls]
        rows = [
            cache.new_entry(
                tenant="bench",
                scope="bench",
                text=text,
                params={},
                model=model.info.as_dict(),
                job_id=str(uuid.uuid4()),
                summary=text[:400],
                language="en",
                input_tokens=len(text) // 4,
                output_units=60,
                chunks=1,
            )
            for text in texts
        ]
        sync_engine = create_engine(sync_url(url))
        with sync_engine.begin() as conn:
            for start in range(0, len(rows), 1_000):
                cache.put(conn, rows[start : start + 1_000])
        sync_engine.dispose()
        await front.put(rows[:calls])

        async def find(mode: str, text: str, *, cached: bool = True) -> None:
            hit = await lookup(
                states[mode], model, tenant="bench", text=text, params={}, options=CacheOptions()
            )
            assert (hit is not None) is cached

        timings: dict[str, list[float]] = {
            "select1": [],
            "database": [],
            "redis": [],
            "redis-miss": [],
            "database-new": [],
            "redis-new": [],
        }
        # Every row read once first: the first read of a fresh row costs PostgreSQL more (hint
        # bits), which would favour whichever mode happens to come second.
        for doc in hot:
            await find("database", doc)
        for doc in hot[:20]:
            await find("redis", doc)
        for round_index in range(2):
            order = list(timings) if round_index % 2 == 0 else list(reversed(timings))
            for mode in order:
                for doc in hot[round_index::2]:
                    if mode == "redis-miss":
                        # Not in Redis: the database answers and the hit is copied back.
                        key = cache.cache_key(scope="bench", text=doc, params={}, model=model.info.as_dict())
                        await front.client.delete(front.name("bench", key))
                    began = time.perf_counter()
                    if mode == "select1":
                        async with engine.connect() as conn:
                            await conn.execute(text("SELECT 1"))
                    elif mode.endswith("-new"):
                        # A text never summarized: what the front adds to every first submit.
                        await find(mode.removesuffix("-new"), f"{doc}\n\nnew", cached=False)
                    else:
                        await find("redis" if mode == "redis-miss" else mode, doc)
                    timings[mode].append(time.perf_counter() - began)
        names = [name async for name in front.client.scan_iter(match=f"{prefix}:*")]
        if names:
            await front.client.delete(*names)
        await front.close()
        await engine.dispose()
        return timings

    with postgres_database() as url:
        timings = asyncio.run(measure(url))
    base = median(timings["database"])
    rows = [
        [
            f"find a cached summary ({entries:,} entries, {calls:,} lookups each)",
            "p50",
            "p99",
            "p50 / database",
        ]
    ]
    for mode, label in (
        ("select1", "for scale: one SELECT 1 round trip on PostgreSQL"),
        ("database", "cache.backend: database (PostgreSQL)"),
        ("redis", "cache.backend: redis, hit in Redis"),
        ("redis-miss", "cache.backend: redis, miss in Redis, hit in the database (+ copy to Redis)"),
        ("database-new", "a text not in the cache, cache.backend: database"),
        ("redis-new", "a text not in the cache, cache.backend: redis"),
    ):
        p50 = median(timings[mode])
        rows.append(
            [
                label,
                f"{p50 * 1000:.3f} ms",
                f"{percentile(timings[mode], 0.99) * 1000:.3f} ms",
                f"{p50 / base:.2f}x",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=None)
    parser.add_argument(
        "--parts",
        default="precision,batch,quota,lookup,submit",
        help="which tables (comma-separated), default all",
    )
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    docs = args.docs or (200 if args.quick else 1_000)
    if "precision" in parts:
        print_table("near-duplicate precision", precision_rows())
    if "batch" in parts:
        print_table("batch with repeats", batch_rows(docs))
    if "quota" in parts:
        print_table("the quota check alone", quota_rows(300 if args.quick else 2_000))
    if "lookup" in parts:
        print_table(
            "cache-hit lookups: database against the Redis front",
            lookup_rows(calls=400 if args.quick else 2_000, entries=2_000 if args.quick else 20_000),
        )
    if "submit" in parts:
        print_table(
            "submit throughput with quotas",
            submit_rows(duration_s=4.0 if args.quick else 8.0, rounds=2 if args.quick else 6, clients=16),
        )
    return []


if __name__ == "__main__":
    main()
