"""Benchmark of the summarization engine, side by side in one run.

    python -m benchmarks.engine                # full run (a few minutes on 2 cores)
    python -m benchmarks.engine --quick        # under ~3 minutes

Prints one table: the int8 default vs the same encoder in fp32, in the dynamic int8 it replaced
and in the previous static int8 recipe (throughput and ROUGE-L end to end, and the encoder alone
in CPU time over the same inputs), whether summaries stay byte-identical across 200 random batch
compositions, batched vs one document at a time, ROUGE of the default beside the lead and TF-IDF
TextRank baselines on both shipped sets (data/eval), the wall time and peak RSS of a
100,000-word document (measured in a fresh subprocess), and how segmentation time grows with the
length of one unbroken paragraph (linear: 4x the words, about 4x the time).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from summarizer import Summarizer, SummarizerError, SummaryResult, load_summarizer
from summarizer.encoder import _OnnxBackend, calibration_digest, quantize_qdq
from summarizer.evaluation import (
    SHIPPED_SETS,
    EvalDoc,
    SetReport,
    baseline_scores,
    load_eval_set,
    model_summaries,
    score,
    shipped_set,
)
from summarizer.extractive import ExtractiveSummarizer
from summarizer.loader import minilm_path
from summarizer.runtime import cache_key, cached_export, hash_weights, int8_isa
from summarizer.segment import segment
from summarizer.settings import SummarizerSettings

DEFAULT_SET = "peps"
TARGETS = {
    "int8_speedup": 2.5,
    "rougeL_drop": 0.5,
    "batched_speedup": 2.0,
    "long_wall_s": 15.0,
    "long_rss_mb": 1536.0,
    "identical_compositions": 1.0,
    # ROUGE-2 and ROUGE-L points over the better of lead and TextRank, on every set.
    "quality_margin": 1.0,
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


def _export_dynamic_int8(source: Path, target: Path) -> None:
    """The int8 recipe the default used until 2026-11-30, kept here to measure against."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    fp32_dir = target / "fp32"
    ORTModelForFeatureExtraction.from_pretrained(source, export=True, local_files_only=True).save_pretrained(
        fp32_dir
    )
    config = getattr(AutoQuantizationConfig, int8_isa())(is_static=False, per_channel=True)
    ORTQuantizer.from_pretrained(fp32_dir).quantize(save_dir=target, quantization_config=config)


def _dynamic_int8(args: argparse.Namespace) -> ExtractiveSummarizer:
    """The default engine on dynamic int8: activation ranges taken from each batch, not calibrated."""
    summarizer = load_summarizer(_settings(args))
    assert isinstance(summarizer, ExtractiveSummarizer)
    source = minilm_path()
    # The key the old recipe used, so that a cache it filled is reused.
    config = {"model": "encoder", "backend": "onnx-int8", "isa": int8_isa(), "per_channel": True}
    directory, _ = cached_export(
        Path(args.cache_dir),
        cache_key(hash_weights(source), config),
        lambda tmp: _export_dynamic_int8(source, tmp),
    )
    # Only the ONNX session changes: tokenizing, batching, pooling and selection stay the default's,
    # so the rows compare quantization recipes alone.
    summarizer.encoder._backend = _OnnxBackend(next(directory.glob("*quantized.onnx")), args.threads)
    return summarizer


PREVIOUS_STATIC = "static int8 (previous recipe)"


def _export_previous_static_int8(source: Path, target: Path, feeds: Sequence[dict[str, np.ndarray]]) -> None:
    """The static int8 recipe the default used until 2026-11-30: every MatMul quantized, the
    activations' readers all taking the dequantized copy."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction

    fp32_dir = target / "fp32"
    ORTModelForFeatureExtraction.from_pretrained(source, export=True, local_files_only=True).save_pretrained(
        fp32_dir
    )
    quantize_qdq(fp32_dir / "model.onnx", target / "model_int8.onnx", feeds)
    shutil.rmtree(fp32_dir)


def _previous_static_int8(args: argparse.Namespace) -> ExtractiveSummarizer:
    """The default engine on the previous static int8 export, in a session with every fusion on."""
    summarizer = load_summarizer(_settings(args))
    assert isinstance(summarizer, ExtractiveSummarizer)
    source = minilm_path()
    # The key the previous recipe used, so that a cache it filled is reused.
    recipe = f"static-int8-qdq-u8s8-per-channel-minmax-calib-{calibration_digest()}"
    config = {"model": "encoder", "backend": "onnx-int8", "recipe": recipe}
    feeds = summarizer.encoder._calibration_feeds()
    directory, _ = cached_export(
        Path(args.cache_dir),
        cache_key(hash_weights(source), config),
        lambda tmp: _export_previous_static_int8(source, tmp, feeds),
    )
    summarizer.encoder._backend = _OnnxBackend(
        directory / "model_int8.onnx", args.threads, disabled_optimizers=()
    )
    return summarizer


def _encoder_alone(
    engines: dict[str, Summarizer], docs: list[EvalDoc], args: argparse.Namespace
) -> dict[str, float]:
    """CPU seconds each engine's encoder takes over the exact inputs the default gives it for ``docs``.

    CPU time rather than wall time: on a shared machine it moves less with the other processes' load.
    """
    default = engines["onnx-int8"]
    assert isinstance(default, ExtractiveSummarizer)
    backend = default.encoder._backend
    calls: list[tuple[np.ndarray, np.ndarray]] = []

    class Recorder:
        def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            calls.append((ids, mask))
            return backend.hidden(ids, mask)

    default.encoder._backend = Recorder()
    try:
        model_summaries(default, docs, {"max_words": args.words})
    finally:
        default.encoder._backend = backend
    seconds = dict.fromkeys(engines, float("inf"))
    for _ in range(args.rounds):
        for name, engine in engines.items():
            assert isinstance(engine, ExtractiveSummarizer)
            began = time.process_time()
            for ids, mask in calls:
                engine.encoder._backend.hidden(ids, mask)
            seconds[name] = min(seconds[name], time.process_time() - began)
    return seconds


def _precision(args: argparse.Namespace, docs: list[EvalDoc], rows: list[tuple[str, str, str, str]]) -> None:
    references = [doc.reference for doc in docs]
    words = sum(len(doc.document.split()) for doc in docs)
    engines: dict[str, Summarizer] = {
        backend: load_summarizer(_settings(args, backend=backend))
        for backend in ("onnx-int8", "onnx-fp32", "torch-fp32")
    }
    engines["dynamic-int8 (old recipe)"] = _dynamic_int8(args)
    engines[PREVIOUS_STATIC] = _previous_static_int8(args)
    seconds = dict.fromkeys(engines, float("inf"))
    rouge_l: dict[str, float] = {}
    # Each round times every engine in turn and the best round counts: the load of a shared
    # machine drifts within a run, and would otherwise favour whichever engine ran first.
    for _ in range(args.rounds):
        for name, engine in engines.items():
            summaries, elapsed = _timed_summaries(engine, docs, args.words)
            seconds[name] = min(seconds[name], elapsed)
            rouge_l[name] = score(name, summaries, references).rougeL
    for name in engines:
        rows.append(
            (
                f"{name}: {len(docs)} docs, best of {args.rounds}",
                f"{words / seconds[name]:,.0f} words/s",
                f"RL {rouge_l[name]:.2f}",
                "",
            )
        )
    for fp32 in ("torch-fp32", "onnx-fp32"):
        speedup = seconds[fp32] / seconds["onnx-int8"]
        before = seconds[fp32] / seconds["dynamic-int8 (old recipe)"]
        rows.append(
            (
                f"int8 vs {fp32} throughput (dynamic int8: {before:.2f}x)",
                f"{speedup:.2f}x",
                f">= {TARGETS['int8_speedup']}x",
                "ok" if speedup >= TARGETS["int8_speedup"] else "MISSED",
            )
        )
        drop = rouge_l[fp32] - rouge_l["onnx-int8"]
        rows.append(
            (
                f"int8 vs {fp32} ROUGE-L drop",
                f"{drop:+.2f}",
                f"<= {TARGETS['rougeL_drop']}",
                "ok" if drop <= TARGETS["rougeL_drop"] else "MISSED",
            )
        )
    rows.append(
        (
            "static int8 vs dynamic int8 throughput",
            f"{seconds['dynamic-int8 (old recipe)'] / seconds['onnx-int8']:.2f}x",
            "",
            "",
        )
    )
    rows.append(
        (
            f"int8 vs {PREVIOUS_STATIC} throughput",
            f"{seconds[PREVIOUS_STATIC] / seconds['onnx-int8']:.2f}x",
            "",
            "",
        )
    )
    alone = _encoder_alone(engines, docs, args)
    for other in ("torch-fp32", "onnx-fp32", PREVIOUS_STATIC):
        before = (
            "" if other == PREVIOUS_STATIC else f" (previous: {alone[other] / alone[PREVIOUS_STATIC]:.2f}x)"
        )
        rows.append(
            (
                f"encoder alone, CPU time: int8 vs {other}{before}",
                f"{alone[other] / alone['onnx-int8']:.2f}x",
                "",
                "",
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


def _quality(args: argparse.Namespace, rows: list[tuple[str, str, str, str]]) -> None:
    summarizer = load_summarizer(_settings(args))
    for name in SHIPPED_SETS:
        docs = load_eval_set(shipped_set(name), args.quality_docs)
        summaries = model_summaries(summarizer, docs, {"max_words": args.words})
        report = SetReport(
            name,
            baseline_scores(docs, args.words),
            score("default", summaries, [doc.reference for doc in docs]),
        )
        for row in [*report.baselines, report.model]:
            rows.append(
                (
                    f"ROUGE {name}: {row.system} ({len(docs)} docs, {args.words} words)",
                    f"{row.rouge1:.2f}",
                    f"{row.rouge2:.2f}",
                    f"{row.rougeL:.2f}",
                )
            )
        rows.append(
            (
                f"ROUGE {name}: default's margin over the better baseline",
                "",
                f"{report.margin('rouge2'):+.2f}",
                f"{report.margin('rougeL'):+.2f}",
            )
        )
        margin = min(report.margin("rouge2"), report.margin("rougeL"))
        rows.append(
            (
                f"{name}: default's lead over lead and TextRank, R2 and RL",
                f"{margin:+.2f} (lower)",
                f">= +{TARGETS['quality_margin']:.1f}",
                "ok" if margin >= TARGETS["quality_margin"] else "MISSED",
            )
        )


def _summary_text(result: SummaryResult | SummarizerError) -> str:
    return result.summary if isinstance(result, SummaryResult) else f"error: {result.code}"


def _identical_compositions(summarizer: Summarizer, texts: Sequence[str], compositions: int) -> int:
    """How many random batches (2-9 documents, any order, repeats allowed) give every document
    the same bytes as it gets alone."""
    budgets = [summarizer.validate_params({"max_words": 25 + 15 * (i % 3)}) for i in range(len(texts))]
    alone = [
        _summary_text(summarizer.summarize_batch([text], params)[0])
        for text, params in zip(texts, budgets, strict=True)
    ]
    rng = random.Random(0)
    same = 0
    for _ in range(compositions):
        picked = [rng.randrange(len(texts)) for _ in range(rng.randint(2, 9))]
        results = summarizer.summarize_batch([texts[i] for i in picked], [budgets[i] for i in picked])
        same += all(_summary_text(r) == alone[i] for i, r in zip(picked, results, strict=True))
    return same


def _determinism(args: argparse.Namespace, rows: list[tuple[str, str, str, str]]) -> None:
    # Openings of real documents of both sets, 60 to 240 words: the gateway's short texts.
    rng = random.Random(1)
    docs = [*load_eval_set(shipped_set("peps"), 20), *load_eval_set(shipped_set("keps"), 20)]
    texts = [" ".join(doc.document.split()[: rng.randint(60, 240)]) for doc in docs]
    compositions = 200
    for name, engine in (
        ("default", load_summarizer(_settings(args))),
        ("dynamic int8", _dynamic_int8(args)),
    ):
        same = _identical_compositions(engine, texts, compositions)
        default = name == "default"
        rows.append(
            (
                f"{name}: byte-identical summaries across {compositions} random batch compositions",
                f"{same}/{compositions} ({100 * same / compositions:.0f}%)",
                f"{compositions}/{compositions}" if default else "(old recipe)",
                ("ok" if same >= TARGETS["identical_compositions"] * compositions else "MISSED")
                if default
                else "",
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
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="JSON lines (.jsonl or .jsonl.gz) for throughput and the long document; default: the shipped PEPs",
    )
    parser.add_argument("--cache-dir", default="var/models", help="where exported models are cached")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: runtime default)")
    parser.add_argument("--words", type=int, default=100, help="summary budget in words")
    parser.add_argument("--precision-docs", type=int, default=40, help="documents for int8 vs fp32")
    parser.add_argument("--short-docs", type=int, default=128, help="texts for batched vs single")
    parser.add_argument("--short-words", type=int, default=150, help="words of each short text")
    parser.add_argument(
        "--quality-docs", type=int, default=None, help="documents of each set for ROUGE (default: all)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of int8 vs fp32, best counts")
    parser.add_argument("--long-words", type=int, default=100_000, help="words of the long document")
    parser.add_argument("--quick", action="store_true", help="smaller samples: a run of under ~3 minutes")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["precision", "batching", "quality", "determinism", "long", "segment"],
    )
    parser.add_argument("--long-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = shipped_set(DEFAULT_SET)
    if args.long_child:
        return _long_child(args)
    if args.quick:
        args.precision_docs = min(args.precision_docs, 12)
        args.short_docs = min(args.short_docs, 64)
        args.quality_docs = min(args.quality_docs or 60, 60)
        args.rounds = 1
    docs = load_eval_set(args.data)
    rows: list[tuple[str, str, str, str]] = []
    began = time.perf_counter()
    if "precision" not in args.skip:
        _precision(args, docs[: args.precision_docs], rows)
    if "batching" not in args.skip:
        _batching(args, docs[: args.short_docs], rows)
    if "quality" not in args.skip:
        _quality(args, rows)
    if "determinism" not in args.skip:
        _determinism(args, rows)
    if "long" not in args.skip:
        _long_document(args, rows)
    if "segment" not in args.skip:
        _segmentation(docs, rows)
    _print(rows)
    print(f"\n(benchmark took {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
