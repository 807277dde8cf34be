"""Shared pieces of the benchmarks: documents, tables, percentiles."""

from __future__ import annotations

import gzip
import json
import random
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEPS = REPO / "data" / "eval" / "peps.jsonl.gz"
MODEL_CACHE = REPO / "var" / "models"


def peps_documents(limit: int | None = None) -> list[str]:
    """The PEPs shipped in ``data/eval`` (varied synthetic prose if they were removed)."""
    if PEPS.exists():
        with gzip.open(PEPS, "rt", encoding="utf-8") as handle:
            docs = [json.loads(line)["document"] for line in handle if line.strip()]
        return docs[:limit] if limit else docs
    rng = random.Random(7)
    words = (
        "the queue holds each job while workers pull batches of documents and store their summaries "
        "so that clients can poll by id or receive a signed webhook when the work is done"
    ).split()
    count = limit or 100
    return [
        " ".join(" ".join(rng.sample(words, 12)).capitalize() + "." for _ in range(rng.randint(80, 200)))
        for _ in range(count)
    ]


def first_words(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def long_documents(count: int, words: int) -> list[str]:
    """``count`` different documents of ``words`` words, each made of whole PEPs in its own order."""
    docs = peps_documents()
    out = []
    for index in range(count):
        order = random.Random(index).sample(docs, len(docs))
        taken: list[str] = []
        total = 0
        for doc in order:
            if total >= words:
                break
            taken.append(doc)
            total += len(doc.split())
        out.append(first_words("\n\n".join(taken), words))
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
