"""Benchmark of the summarization engine, side by side in one run.

    python -m benchmarks.engine                # full run (a few minutes on 2 cores)
    python -m benchmarks.engine --quick        # under ~3 minutes

Prints one table: int8 default vs the same encoder in fp32 (throughput and ROUGE-L), batched vs one
document at a time, ROUGE of the default beside the lead and TF-IDF TextRank baselines, the wall
time and peak RSS of a 100,000-word document (measured in a fresh subprocess), and how segmentation
time grows with the length of one unbroken paragraph (linear: 4x the words, about 4x the time).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from summarizer import Summarizer, SummaryResult, load_summarizer
from summarizer.evaluation import EvalDoc, baseline_scores, load_eval_set, model_summaries, score
from summarizer.segment import segment
from summarizer.settings import SummarizerSettings

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "peps.jsonl"
TARGETS = {
    "int8_speedup": 2.5,
    "rougeL_drop": 0.5,
    "batched_speedup": 2.0,
    "long_wall_s": 15.0,
    "long_rss_mb": 1536.0,
    # 4x the words of one paragraph; quadratic splitting took 9.5x (2.9 s against 27.6 s).
    "segment_growth": 5.0,
}


def _settings(args: argparse.Namespace, **overrides: Any) -> SummarizerSettings:
    return SummarizerSettings(cache_dir=args.cache_dir, num_threads=args.threads, **overrides)


def _timed_summaries(summarizer: Summarizer, docs: Sequence[EvalDoc], words: int) -> tuple[list[str], float]:
    summarizer.summarize_batch(
        ["Warm-up sentence one. Warm-up sentence two."], summarizer.validate_params({})
    )
    began = time.perf_counter()
    summaries = model_summaries(summarizer, docs, {"max_words": words})
    return summaries, time.perf_counter() - began


def _precision(args: argparse.Namespace, docs: list[EvalDoc], rows: list[tuple[str, str, str, str]]) -> None:
    references = [doc.reference for doc in docs]
    words = sum(len(doc.document.split()) for doc in docs)
    results: dict[str, tuple[float, float]] = {}
    for backend in ("onnx-int8", "onnx-fp32", "torch-fp32"):
        summarizer = load_summarizer(_settings(args, backend=backend))
        summaries, seconds = _timed_summaries(summarizer, docs, args.words)
        results[backend] = (seconds, score(backend, summaries, references).rougeL)
        rows.append(
            (
                f"{backend}: {len(docs)} docs",
                f"{words / seconds:,.0f} words/s",
                f"RL {results[backend][1]:.2f}",
                "",
            )
        )
        del summarizer
    int8_s, int8_rl = results["onnx-int8"]
    for fp32 in ("torch-fp32", "onnx-fp32"):
        fp32_s, fp32_rl = results[fp32]
        speedup = fp32_s / int8_s
        rows.append(
            (
                f"int8 vs {fp32} throughput",
                f"{speedup:.2f}x",
                f">= {TARGETS['int8_speedup']}x",
                "ok" if speedup >= TARGETS["int8_speedup"] else "MISSED",
            )
        )
        drop = fp32_rl - int8_rl
        rows.append(
            (
                f"int8 vs {fp32} ROUGE-L drop",
                f"{drop:+.2f}",
                f"<= {TARGETS['rougeL_drop']}",
                "ok" if drop <= TARGETS["rougeL_drop"] else "MISSED",
            )
        )


def _batching(args: argparse.Namespace, docs: list[EvalDoc], rows: list[tuple[str, str, str, str]]) -> None:
    # Short texts, as on the gateway's sync path: the first paragraphs of each document.
    texts = [" ".join(doc.document.split()[: args.short_words]) for doc in docs]
    summarizer = load_summarizer(_settings(args))
    params = summarizer.validate_params({"max_words": 40})
    summarizer.summarize_batch(texts[:2], params)
    began = time.perf_counter()
    for text in texts:
        summarizer.summarize_batch([text], params)
    single = time.perf_counter() - began
    began = time.perf_counter()
    batched = summarizer.summarize_batch(texts, params)
    together = time.perf_counter() - began
    assert all(isinstance(result, SummaryResult) for result in batched)
    speedup = single / together
    rows.append(
        (
            f"batched vs single: {len(texts)} x {args.short_words} words",
            f"{speedup:.2f}x",
            f">= {TARGETS['batched_speedup']}x",
            "ok" if speedup >= TARGETS["batched_speedup"] else "MISSED",
        )
    )


def _quality(args: argparse.Namespace, docs: list[EvalDoc], rows: list[tuple[str, str, str, str]]) -> None:
    summarizer = load_summarizer(_settings(args))
    summaries = model_summaries(summarizer, docs, {"max_words": args.words})
    ours = score("default", summaries, [doc.reference for doc in docs])
    baselines = baseline_scores(docs, args.words)
    for row in [*baselines, ours]:
        rows.append(
            (
                f"ROUGE {row.system} ({len(docs)} docs, {args.words} words)",
                f"{row.rouge1:.2f}",
                f"{row.rouge2:.2f}",
                f"{row.rougeL:.2f}",
            )
        )
    beats = all(
        getattr(ours, metric) > getattr(base, metric)
        for base in baselines
        for metric in ("rouge1", "rouge2", "rougeL")
    )
    rows.append(
        (
            "default beats lead and TextRank on R1/R2/RL",
            "yes" if beats else "no",
            "",
            "ok" if beats else "MISSED",
        )
    )


def _long_document(args: argparse.Namespace, rows: list[tuple[str, str, str, str]]) -> None:
    command = [
        sys.executable,
        "-m",
        "benchmarks.engine",
        "--long-child",
        "--long-words",
        str(args.long_words),
        "--cache-dir",
        args.cache_dir,
        "--threads",
        str(args.threads),
        "--data",
        str(args.data),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        rows.append(
            (
                "long document",
                "failed",
                completed.stderr.strip().splitlines()[-1:][0] if completed.stderr else "",
                "MISSED",
            )
        )
        return
    report = json.loads(lines[-1])
    rows.append(
        (
            f"{report['words']:,}-word document wall time (load {report['load_s']:.1f}s apart)",
            f"{report['summarize_s']:.2f} s",
            f"<= {TARGETS['long_wall_s']:.0f} s",
            "ok" if report["summarize_s"] <= TARGETS["long_wall_s"] else "MISSED",
        )
    )
    rows.append(
        (
            f"{report['words']:,}-word document peak RSS (process)",
            f"{report['peak_rss_mb']:.0f} MB",
            f"<= {TARGETS['long_rss_mb']:.0f} MB",
            "ok" if report["peak_rss_mb"] <= TARGETS["long_rss_mb"] else "MISSED",
        )
    )


def _segment_s(text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        segment(text)
        best = min(best, time.perf_counter() - began)
    return best


def _segmentation(docs: list[EvalDoc], rows: list[tuple[str, str, str, str]]) -> None:
    words: list[str] = []
    for doc in docs:
        words.extend(doc.document.split())
        if len(words) >= 40_000:
            break
    while len(words) < 40_000:
        words.extend(words)
    seconds: dict[int, float] = {}
    for count in (10_000, 40_000):
        seconds[count] = _segment_s(" ".join(words[:count]))
        rows.append((f"segment one {count:,}-word paragraph", f"{seconds[count]:.3f} s", "", ""))
    paragraphs = "\n\n".join(" ".join(words[start : start + 100]) for start in range(0, 40_000, 100))
    rows.append(("segment 40,000 words in 100-word paragraphs", f"{_segment_s(paragraphs):.3f} s", "", ""))
    growth = seconds[40_000] / seconds[10_000]
    rows.append(
        (
            "segment time, 40,000 vs 10,000 words (linear: ~4x)",
            f"{growth:.1f}x",
            f"<= {TARGETS['segment_growth']:.0f}x",
            "ok" if growth <= TARGETS["segment_growth"] else "MISSED",
        )
    )


def _long_child(args: argparse.Namespace) -> int:
    """Runs in a fresh process so that peak RSS belongs to this one document alone."""
    docs = load_eval_set(args.data)
    paragraphs: list[str] = []
    count = 0
    # Whole documents, repeated if the set is small, the last one cut to land on the word count.
    while count < args.long_words:
        for doc in docs:
            words_here = len(doc.document.split())
            if count + words_here > args.long_words:
                kept = " ".join(doc.document.split()[: args.long_words - count])
                paragraphs.append(kept)
                count += len(kept.split())
                break
            paragraphs.append(doc.document)
            count += words_here
    text = "\n\n".join(paragraphs)
    began = time.perf_counter()
    summarizer = load_summarizer(_settings(args))
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    (result,) = summarizer.summarize_batch([text], summarizer.validate_params({"max_words": 200}))
    summarize_s = time.perf_counter() - began
    assert isinstance(result, SummaryResult)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "words": len(text.split()),
                "load_s": load_s,
                "summarize_s": summarize_s,
                "peak_rss_mb": peak_kb / 1024,
                "input_tokens": result.input_tokens,
            }
        )
    )
    return 0


def _print(rows: list[tuple[str, str, str, str]]) -> None:
    width = max(len(row[0]) for row in rows)
    print(f"{'measure'.ljust(width)} | {'value':>16} | {'target / R2':>14} | {'RL / verdict':>12}")
    print("-" * (width + 52))
    for name, value, target, verdict in rows:
        print(f"{name.ljust(width)} | {value:>16} | {target:>14} | {verdict:>12}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON lines with document/reference")
    parser.add_argument("--cache-dir", default="var/models", help="where exported models are cached")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: runtime default)")
    parser.add_argument("--words", type=int, default=100, help="summary budget in words")
    parser.add_argument("--precision-docs", type=int, default=40, help="documents for int8 vs fp32")
    parser.add_argument("--short-docs", type=int, default=128, help="texts for batched vs single")
    parser.add_argument("--short-words", type=int, default=150, help="words of each short text")
    parser.add_argument("--quality-docs", type=int, default=262, help="documents for ROUGE vs baselines")
    parser.add_argument("--long-words", type=int, default=100_000, help="words of the long document")
    parser.add_argument("--quick", action="store_true", help="smaller samples: a run of under ~3 minutes")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["precision", "batching", "quality", "long", "segment"],
    )
    parser.add_argument("--long-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.long_child:
        return _long_child(args)
    if args.quick:
        args.precision_docs = min(args.precision_docs, 12)
        args.short_docs = min(args.short_docs, 64)
        args.quality_docs = min(args.quality_docs, 60)
    docs = load_eval_set(args.data)
    rows: list[tuple[str, str, str, str]] = []
    began = time.perf_counter()
    if "precision" not in args.skip:
        _precision(args, docs[: args.precision_docs], rows)
    if "batching" not in args.skip:
        _batching(args, docs[: args.short_docs], rows)
    if "quality" not in args.skip:
        _quality(args, docs[: args.quality_docs], rows)
    if "long" not in args.skip:
        _long_document(args, rows)
    if "segment" not in args.skip:
        _segmentation(docs, rows)
    _print(rows)
    print(f"\n(benchmark took {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
