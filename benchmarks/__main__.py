"""``make bench``: every benchmark, each a table of figures measured side by side in one run.

``python -m benchmarks`` runs them all; ``python -m benchmarks engine sync`` runs a selection;
``--quick`` shrinks the samples. Needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379 (the
Celery baseline of the submit benchmark).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from benchmarks import cost, engine, idle, llm, pii, pipeline, submit, sync, upload, variants

QUICK: dict[str, list[str]] = {
    "engine": ["--quick"],
    "submit": ["--duration-s", "5"],
    "sync": ["--duration-s", "5", "--requests-c1", "100"],
    "pipeline": ["--docs", "100", "--long-docs", "4"],
    "idle": ["--duration-s", "10"],
    # Already quick, and smaller uploads would fit under the limit instead of being refused.
    "upload": [],
    "variants": ["--duration-s", "5"],
    "pii": ["--per-type", "50"],
    "llm": ["--quick"],
    "cost": ["--quick"],
}
SUITES: dict[str, Callable[[list[str]], object]] = {
    "engine": engine.main,
    "submit": submit.main,
    "sync": sync.main,
    "pipeline": pipeline.main,
    "idle": idle.main,
    "upload": upload.main,
    "variants": variants.main,
    "pii": pii.main,
    "llm": llm.main,
    "cost": cost.main,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"which benchmarks: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller samples, a few minutes in all")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SUITES)}")
    for name in args.suites or list(SUITES):
        print(f"\n=== {name} ===", flush=True)
        SUITES[name](QUICK[name] if args.quick else [])
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
