"""Model variants on the sync path: what serving two variants costs against serving one.

The same short texts are answered, one gateway after the other in one run, by a gateway with the
single default variant and by one with two variants of the same model split 50/50 by weight. Each
variant has its own model and micro-batcher, so the requests of one load make batches half as
full, and the process holds the model twice: the table sets throughput, latency and the gateway's
resident memory side by side, as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks.common import MODEL_CACHE, first_words, peps_documents, print_table
from benchmarks.loadgen import LoadResult, build_request, run_load
from benchmarks.stack import postgres_database
from condense.stack import Stack, free_port

TWO_VARIANTS = {
    "CONDENSE_VARIANTS__A__WEIGHT": "1",
    "CONDENSE_VARIANTS__B__WEIGHT": "1",
}


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _gateway_load(
    workdir: Path, url: str, bodies: list[bytes], clients: int, duration_s: float, extra: dict[str, str]
) -> tuple[LoadResult, float]:
    port = free_port()
    env = {
        "CONDENSE_DATABASE__URL": url,
        "CONDENSE_DATA_DIR": str(workdir),
        "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
        "CONDENSE_GATEWAY__MICRO_BATCH__MAX_QUEUE": "1024",
        "CONDENSE_LOGGING__LEVEL": "WARNING",
        # The texts repeat; the result cache would answer them without the engine this measures.
        "CONDENSE_CACHE__ENABLED": "false",
        **extra,
    }
    with Stack(workdir, env) as stack:
        gateway = stack.condense("gateway", "gateway", "--port", str(port))
        stack.wait_ready(port)
        asyncio.run(
            run_load("127.0.0.1", port, lambda i: bodies[i % len(bodies)], clients=clients, duration_s=2)
        )
        result = asyncio.run(
            run_load(
                "127.0.0.1", port, lambda i: bodies[i % len(bodies)], clients=clients, duration_s=duration_s
            )
        )
        assert gateway.process is not None
        return result, _rss_mib(gateway.process.pid)


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--words", type=int, default=120, help="words of each short text")
    args = parser.parse_args(argv)
    texts = [first_words(doc, args.words) for doc in peps_documents(200)]
    bodies = [
        build_request("127.0.0.1", 0, "/v1/summaries", {"text": text, "mode": "sync"}) for text in texts
    ]
    with tempfile.TemporaryDirectory(prefix="condense-bench-") as tmp, postgres_database() as url:
        workdir = Path(tmp)
        one, one_rss = _gateway_load(workdir, url, bodies, args.clients, args.duration_s, {})
        two, two_rss = _gateway_load(workdir, url, bodies, args.clients, args.duration_s, TWO_VARIANTS)

    def row(name: str, result: LoadResult, rss_mib: float) -> list[str]:
        errors = sum(n for status, n in result.statuses.items() if status != 200)
        return [
            name,
            f"{result.rate:,.1f}",
            f"{result.p50_ms:.1f}",
            f"{result.percentile_ms(0.99):.1f}",
            f"{rss_mib:,.0f}",
            str(errors),
        ]

    rows = [
        ["sync path", "requests/s", "p50 ms", "p99 ms", "gateway RSS MiB", "non-200"],
        row("one variant (default)", one, one_rss),
        row("two variants, 50/50 by weight, same model", two, two_rss),
        [
            "ratio two / one",
            f"{two.rate / one.rate:.2f}x" if one.rate else "n/a",
            f"{two.p50_ms / one.p50_ms:.2f}x" if one.p50_ms else "n/a",
            "",
            f"{two_rss / one_rss:.2f}x" if one_rss else "n/a",
            "",
        ],
    ]
    print_table(f"Short texts ({args.words} words), {args.clients} clients: one variant against two", rows)
    return rows


if __name__ == "__main__":
    main()
