"""Pipeline efficiency: documents/s from submit to stored result, against the bare engine.

The same documents go through the bare engine in this process (batched as a worker batches them)
and then through the whole pipeline — HTTP submit, PostgreSQL, outbox relay, Kafka, one worker
process, result stored — measured from the first submit to the last stored result. Twice: many
documents of ordinary length, then a few very long ones submitted at once (20 of 100,000 words; 4
with ``--quick``), where the pipeline must add little to the engine's own time (target <= 1.3x).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from benchmarks.common import MODEL_CACHE, first_words, long_documents, peps_documents, print_table
from benchmarks.loadgen import build_request, run_load
from benchmarks.stack import postgres_database
from condense.stack import Stack, free_port
from schema.db import sync_url
from schema.models import SummaryJob
from schema.settings import SummarizerSettings, WorkerSettings
from summarizer import load_summarizer


def bare_engine_rate(texts: list[str], max_batch: int) -> float:
    summarizer = load_summarizer(SummarizerSettings(cache_dir=str(MODEL_CACHE)))
    params = summarizer.validate_params({})
    summarizer.summarize_batch([first_words(text, 300) for text in texts[:4]], params)
    began = time.perf_counter()
    for start in range(0, len(texts), max_batch):
        summarizer.summarize_batch(texts[start : start + max_batch], params)
    return len(texts) / (time.perf_counter() - began)


def pipeline_rate(workdir: Path, texts: list[str], max_batch: int) -> tuple[float, int]:
    with postgres_database() as url:
        port = free_port()
        env = {
            "CONDENSE_DATABASE__URL": url,
            "CONDENSE_DATA_DIR": str(workdir),
            "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
            "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{workdir}/celery.db",
            "CONDENSE_WORKER__MAX_BATCH": str(max_batch),
            "CONDENSE_WORKER__METRICS_PORT": "0",
            "CONDENSE_LOGGING__LEVEL": "WARNING",
        }
        with Stack(workdir, env) as stack:
            stack.broker()
            stack.condense("gateway", "gateway", "--port", str(port))
            stack.condense("relay", "relay")
            stack.condense("worker", "worker")
            stack.wait_ready(port)
            # Let the worker join its consumer group before the clock starts.
            time.sleep(8)
            bodies = [
                build_request("127.0.0.1", port, "/v1/summaries", {"text": t, "mode": "async"}) for t in texts
            ]
            engine = create_engine(sync_url(url))
            began = time.perf_counter()
            asyncio.run(run_load("127.0.0.1", port, lambda i: bodies[i], clients=8, total=len(bodies)))
            done = 0
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(
                        select(func.count()).select_from(SummaryJob).where(SummaryJob.status == "succeeded")
                    ).scalar_one()
                if done >= len(texts):
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - began
            engine.dispose()
    return len(texts) / elapsed, done


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--words", type=int, default=1_500, help="words kept of each document")
    parser.add_argument("--long-docs", type=int, default=20, help="very long documents submitted at once")
    parser.add_argument("--long-words", type=int, default=100_000, help="words of each very long document")
    args = parser.parse_args(argv)
    max_batch = WorkerSettings().max_batch
    rows = [["path", "documents/s", "succeeded"]]
    if args.docs:
        texts = [first_words(doc, args.words) for doc in peps_documents(args.docs)]
        engine_rate = bare_engine_rate(texts, max_batch)
        with tempfile.TemporaryDirectory(prefix="condense-bench-") as tmp:
            rate, done = pipeline_rate(Path(tmp), texts, max_batch)
        rows += [
            [f"bare engine, batches of {max_batch}, in process", f"{engine_rate:.2f}", str(len(texts))],
            ["whole pipeline: HTTP -> PostgreSQL -> Kafka -> worker -> stored", f"{rate:.2f}", str(done)],
            ["efficiency pipeline / bare engine", f"{rate / engine_rate:.0%}", ""],
        ]
        print_table(f"End-to-end throughput, {len(texts)} documents of up to {args.words} words", rows)
    if args.long_docs:
        texts = long_documents(args.long_docs, args.long_words)
        engine_rate = bare_engine_rate(texts, max_batch)
        with tempfile.TemporaryDirectory(prefix="condense-bench-") as tmp:
            rate, done = pipeline_rate(Path(tmp), texts, max_batch)
        ratio = engine_rate / rate
        long_rows = [
            ["path", "wall time, s", "succeeded"],
            ["bare engine, in process", f"{len(texts) / engine_rate:.1f}", str(len(texts))],
            ["whole pipeline, all submitted at once", f"{len(texts) / rate:.1f}", str(done)],
            ["pipeline / bare engine (target <= 1.3x)", f"{ratio:.2f}x", "met" if ratio <= 1.3 else "MISSED"],
        ]
        print_table(f"{len(texts)} documents of {args.long_words:,} words at once", long_rows)
        rows += long_rows
    return rows


if __name__ == "__main__":
    main()
