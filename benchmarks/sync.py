"""The low-latency path: micro-batching against one request at a time, and the gateway's overhead.

Both gateways are the same code and model, measured one after the other in one run: the second
is started with ``gateway.micro_batch.max_batch=1``, so the engine sees one request at a time.
Then, at concurrency 1, the gateway's p50 latency is set beside a bare engine call on the same
texts in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks.common import MODEL_CACHE, first_words, median, peps_documents, percentile, print_table
from benchmarks.loadgen import LoadResult, build_request, run_load
from benchmarks.stack import postgres_database
from condense.stack import Stack, free_port
from schema.settings import SummarizerSettings
from summarizer import load_summarizer


def _gateway_load(
    workdir: Path, url: str, bodies: list[bytes], clients: int, duration_s: float, max_batch: int, port: int
) -> LoadResult:
    env = {
        "CONDENSE_DATABASE__URL": url,
        "CONDENSE_DATA_DIR": str(workdir),
        "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
        "CONDENSE_GATEWAY__MICRO_BATCH__MAX_BATCH": str(max_batch),
        # One request at a time means one in flight, too.
        "CONDENSE_GATEWAY__MICRO_BATCH__WORKERS": "2" if max_batch > 1 else "1",
        "CONDENSE_GATEWAY__MICRO_BATCH__MAX_QUEUE": "1024",
        "CONDENSE_LOGGING__LEVEL": "WARNING",
        # The texts repeat; the result cache would answer them without the engine this measures.
        "CONDENSE_CACHE__ENABLED": "false",
    }
    with Stack(workdir, env) as stack:
        stack.condense("gateway", "gateway", "--port", str(port))
        stack.wait_ready(port)
        asyncio.run(
            run_load("127.0.0.1", port, lambda i: bodies[i % len(bodies)], clients=clients, duration_s=2)
        )
        return asyncio.run(
            run_load(
                "127.0.0.1", port, lambda i: bodies[i % len(bodies)], clients=clients, duration_s=duration_s
            )
        )


def _single_client(workdir: Path, url: str, bodies: list[bytes], requests: int, port: int) -> LoadResult:
    env = {
        "CONDENSE_DATABASE__URL": url,
        "CONDENSE_DATA_DIR": str(workdir),
        "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
        "CONDENSE_LOGGING__LEVEL": "WARNING",
        # The texts repeat; the result cache would answer them without the engine this measures.
        "CONDENSE_CACHE__ENABLED": "false",
    }
    with Stack(workdir, env) as stack:
        stack.condense("gateway-c1", "gateway", "--port", str(port))
        stack.wait_ready(port)
        asyncio.run(run_load("127.0.0.1", port, lambda i: bodies[i % len(bodies)], clients=1, total=20))
        return asyncio.run(
            run_load("127.0.0.1", port, lambda i: bodies[i % len(bodies)], clients=1, total=requests)
        )


def _bare_engine_latencies(texts: list[str], requests: int) -> list[float]:
    summarizer = load_summarizer(SummarizerSettings(cache_dir=str(MODEL_CACHE)))
    params = summarizer.validate_params({})
    for text in texts[:20]:
        summarizer.summarize_batch([text], params)
    latencies = []
    for index in range(requests):
        began = time.perf_counter()
        summarizer.summarize_batch([texts[index % len(texts)]], params)
        latencies.append(time.perf_counter() - began)
    return latencies


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--words", type=int, default=120, help="words of each short text")
    parser.add_argument("--requests-c1", type=int, default=200, help="requests at concurrency 1")
    args = parser.parse_args(argv)
    texts = [first_words(doc, args.words) for doc in peps_documents(200)]
    bodies = [
        build_request("127.0.0.1", 0, "/v1/summaries", {"text": text, "mode": "sync"}) for text in texts
    ]
    with tempfile.TemporaryDirectory(prefix="condense-bench-") as tmp, postgres_database() as url:
        workdir = Path(tmp)
        batched = _gateway_load(workdir, url, bodies, args.clients, args.duration_s, 16, free_port())
        single = _gateway_load(workdir, url, bodies, args.clients, args.duration_s, 1, free_port())
        one_client = _single_client(workdir, url, bodies, args.requests_c1, free_port())
    bare = _bare_engine_latencies(texts, args.requests_c1)

    def row(name: str, result: LoadResult) -> list[str]:
        errors = sum(n for status, n in result.statuses.items() if status != 200)
        return [
            name,
            f"{result.rate:,.1f}",
            f"{result.p50_ms:.1f}",
            f"{result.percentile_ms(0.99):.1f}",
            str(errors),
        ]

    rows = [
        ["sync path", "requests/s", "p50 ms", "p99 ms", "non-200"],
        row(f"micro-batching (max_batch 16, 2 batches in flight), {args.clients} clients", batched),
        row(f"one request at a time (max_batch 1, 1 in flight), {args.clients} clients", single),
        [
            "ratio batched / one at a time",
            f"{batched.rate / single.rate:.2f}x" if single.rate else "n/a",
            "",
            "",
            "",
        ],
    ]
    print_table(f"Short texts ({args.words} words) answered in the request", rows)
    bare_p50_ms = median(bare) * 1000
    overhead = [
        ["concurrency 1", "p50 ms", "p99 ms"],
        ["bare engine call (in process)", f"{bare_p50_ms:.2f}", f"{percentile(bare, 0.99) * 1000:.2f}"],
        [
            "through the gateway (HTTP, batcher, stored)",
            f"{one_client.p50_ms:.2f}",
            f"{one_client.percentile_ms(0.99):.2f}",
        ],
        ["gateway overhead", f"{one_client.p50_ms - bare_p50_ms:+.2f}", ""],
    ]
    print_table("Gateway overhead over a bare engine call", overhead)
    return rows + overhead


if __name__ == "__main__":
    main()
