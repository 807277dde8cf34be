"""Benchmark of the instruct-model (causal LM) engine on the CPU, side by side in one run.

    python -m benchmarks.llm             # full run
    python -m benchmarks.llm --quick     # a couple of minutes on 2 cores

The model is a random Llama built here from a config (hidden 256, 4 layers, 512-token context by
default) with a tokenizer trained on local text: its summaries are gibberish, but the work per
token is real. Prints one table:

- batched generation of 16 prompts vs the same prompts one at a time (generated tokens/s), with
  the summarization prompt and, for generation alone, with short prompts and longer answers
  (target >= 3x);
- the batch's attention mask: the engine's own (summarizer.causal.PADDED_SDPA) vs transformers'
  SDPA mask, built with vmap on every step, batched tokens/s and the summaries checked equal;
- torch-int8 (dynamic quantization of the Linear layers) vs torch-fp32: serialized model size,
  tokens/s, and ROUGE-L of each int8 summary against the fp32 one;
- prompts over two LoRA adapters and the base model: one batch per adapter vs one mixed batch
  (peft's ``adapter_names``), with the outputs checked equal.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import print_table
from summarizer import SummarizerSettings, SummaryParams, SummaryResult, load_summarizer
from summarizer.causal import PADDED_SDPA, CausalLMSummarizer
from summarizer.settings import PromptSettings
from tests.fixtures.models import build_lora_adapter, build_tiny_causal, corpus_words

TARGETS = {"batched_speedup": 3.0}


def _documents(count: int, words: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    vocabulary = corpus_words()
    docs = []
    for _ in range(count):
        sentences = []
        while sum(len(sentence.split()) for sentence in sentences) < words:
            sentences.append(" ".join(rng.choices(vocabulary, k=rng.randint(6, 14))).capitalize() + ".")
        docs.append(" ".join(sentences))
    return docs


class _TokenCounter:
    """Wraps ``model.generate`` to count the tokens it writes (padding after an end token excluded)."""

    def __init__(self, summarizer: CausalLMSummarizer) -> None:
        self.tokens = 0
        self.summarizer = summarizer
        original = summarizer.model.generate
        pad = int(summarizer.tokenizer.pad_token_id)

        def counted(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            width = kwargs["input_ids"].shape[1]
            self.tokens += int((output[:, width:] != pad).sum())
            return output

        summarizer.model.generate = counted


Measured = tuple[float, float, list[str]]


def _side_by_side(runs: list[tuple[Callable[[], list[Any]], _TokenCounter]], rounds: int) -> list[Measured]:
    """Per run: best wall time, generated tokens/s at that time, and the summaries.

    Rounds alternate between the runs, so that load from other processes, which comes and goes on
    a shared machine, weighs on each of them alike.
    """
    best: list[Measured] = [(float("inf"), 0.0, []) for _ in runs]
    for _ in range(rounds):
        for number, (run, counter) in enumerate(runs):
            counter.tokens = 0
            began = time.perf_counter()
            results = run()
            elapsed = time.perf_counter() - began
            if elapsed < best[number][0]:
                summaries = [
                    result.summary if isinstance(result, SummaryResult) else repr(result)
                    for result in results
                ]
                best[number] = (elapsed, counter.tokens / elapsed, summaries)
    return best


def _model_bytes(summarizer: CausalLMSummarizer) -> int:
    import torch

    buffer = io.BytesIO()
    torch.save(summarizer.model.state_dict(), buffer)
    return buffer.tell()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm", description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the random model")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the random model")
    parser.add_argument("--context", type=int, default=512, help="context of the random model, tokens")
    parser.add_argument("--prompts", type=int, default=16, help="prompts in each comparison")
    parser.add_argument("--words", type=int, default=30, help="words of each prompt's document")
    parser.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens of each summary")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, best counts")
    # One thread by default: on a shared machine of few cores, two threads per process mostly wait
    # for each other, and the ratios swung from run to run.
    parser.add_argument("--threads", type=int, default=1, help="inference threads (0: runtime default)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.new_tokens = 2, 48

    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_causal(
            root / "model", context_tokens=args.context, hidden_size=args.hidden, layers=args.layers
        )
        adapters = {
            name: str(build_lora_adapter(model_dir, root / name, seed=seed))
            for name, seed in (("a", 1), ("b", 2))
        }
        rows = run(model_dir, adapters, args)
    print_table(
        f"causal LM engine, CPU, random Llama hidden {args.hidden} x {args.layers} layers,"
        f" {args.prompts} prompts of ~{args.words} words, max_new_tokens {args.new_tokens}",
        rows,
    )
    return 0


def run(model_dir: Path, adapters: dict[str, str], args: argparse.Namespace) -> list[list[str]]:
    docs = _documents(args.prompts, args.words)

    def load(backend: str, **extra: Any) -> CausalLMSummarizer:
        summarizer = load_summarizer(
            SummarizerSettings(
                model=str(model_dir),
                backend=backend,  # type: ignore[arg-type]
                device="cpu",
                num_threads=args.threads,
                max_context_tokens=args.context,
                **extra,
            )
        )
        assert isinstance(summarizer, CausalLMSummarizer)
        return summarizer

    rows = [["measure", "value", "target"]]
    fp32 = load("torch-fp32")
    int8 = load("torch-int8")
    counter, int8_counter = _TokenCounter(fp32), _TokenCounter(int8)
    params = fp32.validate_params({"max_new_tokens": args.new_tokens})
    fp32.summarize_batch(docs[:2], params)  # warm-up
    int8.summarize_batch(docs[:2], params)
    batched, single, quantized = _side_by_side(
        [
            (lambda: fp32.summarize_batch(docs, params), counter),
            (lambda: [fp32.summarize_batch([doc], params)[0] for doc in docs], counter),
            (lambda: int8.summarize_batch(docs, params), int8_counter),
        ],
        args.rounds,
    )
    same = sum(a == b for a, b in zip(batched[2], single[2], strict=True))
    rows += [
        ["fp32 batched / one at a time, tokens/s", f"{batched[1]:.0f} / {single[1]:.0f}", ""],
        ["batched speedup, summarization prompt", f"{batched[1] / single[1]:.2f}x", ""],
        ["batched == one at a time (summaries)", f"{same}/{len(docs)}", f"{len(docs)}/{len(docs)}"],
    ]

    def masked_by(attention: str) -> list[Any]:
        fp32.model.set_attn_implementation(attention)
        try:
            return fp32.summarize_batch(docs, params)
        finally:
            fp32.model.set_attn_implementation(PADDED_SDPA)

    padded, vmapped = _side_by_side(
        [(lambda: masked_by(PADDED_SDPA), counter), (lambda: masked_by("sdpa"), counter)], args.rounds
    )
    rows += [
        [
            "batched, padded mask / transformers' sdpa mask, tokens/s",
            f"{padded[1]:.0f} / {vmapped[1]:.0f} ({padded[1] / vmapped[1]:.2f}x)",
            "",
        ],
        ["padded mask == sdpa mask (summaries)", f"{padded[2] == vmapped[2]}", "True"],
    ]
    # The prompt's prefill costs the same batched or not, and on a CPU it is most of the work of a
    # summarization prompt; generation itself is what batching speeds up, measured here on short
    # prompts and longer answers.
    short = load("torch-fp32", prompt=PromptSettings(system="", user="Summarize: {text}"))
    short_counter = _TokenCounter(short)
    short_docs = _documents(args.prompts, 10, seed=12)
    short_params = short.validate_params({"max_new_tokens": args.new_tokens * 2})
    short.summarize_batch(short_docs[:2], short_params)
    short_batched, short_single = _side_by_side(
        [
            (lambda: short.summarize_batch(short_docs, short_params), short_counter),
            (lambda: [short.summarize_batch([doc], short_params)[0] for doc in short_docs], short_counter),
        ],
        args.rounds,
    )
    rows += [
        [
            f"batched speedup, generation ({args.new_tokens * 2} new tokens, ~25-token prompts)",
            f"{short_batched[1] / short_single[1]:.2f}x ({short_batched[1]:.0f} / {short_single[1]:.0f} tokens/s)",
            f">= {TARGETS['batched_speedup']:.0f}x",
        ]
    ]
    rows += [
        [
            "model size fp32 / int8, MB",
            f"{_model_bytes(fp32) / 1e6:.1f} / {_model_bytes(int8) / 1e6:.1f}",
            "",
        ],
        ["int8 batched, tokens/s", f"{quantized[1]:.0f} ({quantized[1] / batched[1]:.2f}x fp32)", ""],
        ["ROUGE-L int8 vs fp32 summary", f"{_rouge_l(batched[2], quantized[2]):.3f}", ""],
    ]

    tuned = load("torch-fp32", adapters=adapters)
    tuned_counter = _TokenCounter(tuned)
    names = [None, "a", "b"]
    per_doc: list[SummaryParams] = [
        tuned.validate_params(
            {"max_new_tokens": args.new_tokens} | ({"adapter": names[n % 3]} if names[n % 3] else {})
        )
        for n in range(len(docs))
    ]
    tuned.summarize_batch(docs[:3], per_doc[:3])

    def adapters_run(mixed: bool) -> list[Any]:
        tuned.mixed_adapter_batches = mixed
        return tuned.summarize_batch(docs, per_doc)

    mixed, grouped = _side_by_side(
        [(lambda: adapters_run(True), tuned_counter), (lambda: adapters_run(False), tuned_counter)],
        args.rounds,
    )
    rows += [
        [
            "adapters: mixed batch / batch per adapter, tokens/s",
            f"{mixed[1]:.0f} / {grouped[1]:.0f} ({mixed[1] / grouped[1]:.2f}x)",
            "",
        ],
        ["mixed == grouped (summaries)", f"{mixed[2] == grouped[2]}", "True"],
    ]
    return rows


def _rouge_l(references: list[str], candidates: list[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [
        scorer.score(reference, candidate)["rougeL"].fmeasure
        for reference, candidate in zip(references, candidates, strict=True)
    ]
    return sum(scores) / len(scores)


if __name__ == "__main__":
    raise SystemExit(main())
