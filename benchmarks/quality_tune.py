"""Grid search of sentence selection on cached embeddings (see ``benchmarks.quality_cache``).

    python -m benchmarks.quality_tune --cache /tmp/condense-quality            # default vs baselines
    python -m benchmarks.quality_tune --cache /tmp/condense-quality --search   # the tuning protocol

Selection runs through ``summarizer.select.select`` itself, so the figures are the engine's. ROUGE
is rouge-score's (same tokenizer and stemmer), computed on the units' tokens, which is what the
joined summary tokenizes to. The protocol: tune on the first half of the PEPs only, then report the
second half of the PEPs and all KEPs without further tuning.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from summarizer.baselines import BASELINES
from summarizer.language import count_words
from summarizer.segment import Segment
from summarizer.select import SelectionConfig, section_numbers, select

WORDS = 100


@dataclass
class CachedDoc:
    id: str
    units: list[str]
    vectors: np.ndarray
    words: list[int]
    sections: list[int]
    unit_tokens: list[list[str]]
    reference_tokens: list[str]
    reference_bigrams: Counter[tuple[str, ...]]
    reference_unigrams: Counter[tuple[str, ...]]


def _tokenizer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)._tokenizer


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def load(path: Path) -> list[CachedDoc]:
    tokenizer = _tokenizer()
    data = np.load(path)
    records = json.loads(str(data["meta"]))
    docs: list[CachedDoc] = []
    for n, record in enumerate(records):
        reference = tokenizer.tokenize(record["reference"])
        docs.append(
            CachedDoc(
                id=record["id"],
                units=record["units"],
                vectors=data[f"v{n}"],
                words=[count_words(text) for text in record["units"]],
                sections=section_numbers(
                    [
                        Segment(text, block)
                        for text, block in zip(record["units"], record["blocks"], strict=True)
                    ],
                    [Segment(text, block, heading=True) for block, text in record["headings"]],
                ),
                unit_tokens=[tokenizer.tokenize(text) for text in record["units"]],
                reference_tokens=reference,
                reference_bigrams=_ngrams(reference, 2),
                reference_unigrams=_ngrams(reference, 1),
            )
        )
    return docs


def _f1(overlap: float, predicted: int, target: int) -> float:
    if not overlap or not predicted or not target:
        return 0.0
    precision, recall = overlap / predicted, overlap / target
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge(doc: CachedDoc, tokens: Sequence[str]) -> tuple[float, float, float]:
    unigrams, bigrams = _ngrams(tokens, 1), _ngrams(tokens, 2)
    r1 = _f1(sum((unigrams & doc.reference_unigrams).values()), len(tokens), len(doc.reference_tokens))
    r2 = _f1(
        sum((bigrams & doc.reference_bigrams).values()),
        max(len(tokens) - 1, 0),
        max(len(doc.reference_tokens) - 1, 0),
    )
    rl = _f1(_lcs(doc.reference_tokens, tokens), len(tokens), len(doc.reference_tokens))
    return r1, r2, rl


def evaluate(docs: Sequence[CachedDoc], config: SelectionConfig) -> np.ndarray:
    """Mean ROUGE-1/2/L F1 x100 of the selection under ``config``."""
    totals = np.zeros(3)
    for doc in docs:
        chosen = select(
            doc.vectors,
            doc.words,
            list(range(len(doc.units))),
            max_words=WORDS,
            sections=doc.sections,
            texts=doc.units,
            config=config,
        )
        tokens = [token for i in chosen for token in doc.unit_tokens[i]]
        totals += rouge(doc, tokens)
    return 100 * totals / max(len(docs), 1)


def baselines(set_name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-document ROUGE of lead and TextRank with rouge-score itself, keyed by system."""
    from rouge_score import rouge_scorer

    from summarizer.evaluation import load_eval_set, shipped_set

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    by_id = {doc.id: doc for doc in load_eval_set(shipped_set(set_name))}
    out: dict[str, np.ndarray] = {}
    for name, system in BASELINES.items():
        rows = []
        for doc_id in ids:
            doc = by_id[doc_id]
            result = scorer.score(doc.reference, system(doc.document, WORDS))
            rows.append([100 * result[key].fmeasure for key in ("rouge1", "rouge2", "rougeL")])
        out[name] = np.asarray(rows)
    return out


def _cached_baselines(cache: Path, set_name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    path = cache / f"{set_name}-baselines.npz"
    if path.is_file():
        return dict(np.load(path))
    out = baselines(set_name, ids)
    np.savez(path, **out)
    return out


def _splits(sets: dict[str, list[CachedDoc]]) -> dict[str, list[CachedDoc]]:
    peps = sets["peps"]
    half = len(peps) // 2
    splits = {"peps[:half]": peps[:half], "peps[half:]": peps[half:], "peps": peps}
    if "keps" in sets:
        splits["keps"] = sets["keps"]
    return splits


def report(
    sets: dict[str, list[CachedDoc]], config: SelectionConfig, base: dict[str, dict[str, np.ndarray]]
) -> None:
    print("| split | docs | lead R2/RL | textrank R2/RL | model R1/R2/RL | margin R2 / RL |")
    print("|---|---|---|---|---|---|")
    for split, docs in _splits(sets).items():
        model = evaluate(docs, config)
        set_name = "peps" if split.startswith("peps") else "keps"
        index = {doc.id: n for n, doc in enumerate(sets[set_name])}
        rows = [index[doc.id] for doc in docs]
        means = {name: table[rows].mean(axis=0) for name, table in base[set_name].items()}
        best_r2 = max(m[1] for m in means.values())
        best_rl = max(m[2] for m in means.values())
        lead, textrank = means["lead"], means["textrank-tfidf"]
        print(
            f"| {split} | {len(docs)} | {lead[1]:.2f} / {lead[2]:.2f} | {textrank[1]:.2f} / {textrank[2]:.2f} "
            f"| {model[0]:.2f} / {model[1]:.2f} / {model[2]:.2f} "
            f"| {model[1] - best_r2:+.2f} / {model[2] - best_rl:+.2f} |"
        )


def _objective(scores: np.ndarray) -> float:
    return float(scores[1] + scores[2])


def search(
    docs: Sequence[CachedDoc], start: SelectionConfig, grid: dict[str, list[Any]], rounds: int
) -> SelectionConfig:
    """Coordinate ascent on R2 + RL over ``docs``: one knob at a time over its grid, ``rounds`` times."""
    best = start
    best_score = _objective(evaluate(docs, best))
    print(f"start {best_score:.3f}", flush=True)
    for _ in range(rounds):
        improved = False
        for name, values in grid.items():
            for value in values:
                trial = replace(best, **{name: value})
                if trial == best:
                    continue
                result = _objective(evaluate(docs, trial))
                if result > best_score + 1e-6:
                    best, best_score, improved = trial, result, True
                    print(f"  {name}={value}: {result:.3f}", flush=True)
        if not improved:
            break
    return best


def grid_search(
    docs: Sequence[CachedDoc], start: SelectionConfig, grid: dict[str, list[Any]]
) -> SelectionConfig:
    """Every combination of ``grid`` on top of ``start``, best R2 + RL on ``docs``."""
    names = list(grid)
    best, best_score = start, _objective(evaluate(docs, start))
    for values in itertools.product(*(grid[name] for name in names)):
        trial = replace(start, **dict(zip(names, values, strict=True)))
        result = _objective(evaluate(docs, trial))
        if result > best_score:
            best, best_score = trial, result
            print(f"  {dict(zip(names, values, strict=True))}: {result:.3f}", flush=True)
    return best


GRID: dict[str, list[Any]] = {
    "centrality_weight": [0.0, 0.1, 0.2, 0.3, 0.5],
    "forward_weight": [-2.0, -1.0, -0.5, 0.0, 0.5],
    "edge_threshold": [0.3, 0.5, 0.6, 0.7, 0.8],
    "position_weight": [0.0, 0.05, 0.1, 0.15, 0.25, 0.4],
    "position_scale": [5.0, 10.0, 20.0, 40.0, 80.0],
    "section_weight": [0.0, 0.02, 0.05, 0.1, 0.2],
    "section_scale": [0.5, 1.0, 2.0, 4.0],
    "section_order_scale": [1.0, 3.0, 10.0, 1e9],
    "boilerplate_penalty": [0.0, 0.1, 0.2, 0.4, 0.8],
    "redundancy": [0.0, 0.15, 0.3, 0.5, 0.8],
    "min_words": [5, 8, 10, 12],
    "pick_max_words": [30, 40, 50, 60],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "condense-quality")
    parser.add_argument("--search", action="store_true", help="tune on the first half of the PEPs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--config", default="{}", help="JSON overrides of the selection defaults")
    parser.add_argument("--grid", default=None, help="JSON grid to search instead of the built-in one")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    sets = {
        name: load(args.cache / f"{name}.npz")
        for name in ("peps", "keps")
        if (args.cache / f"{name}.npz").is_file()
    }
    base = {
        name: _cached_baselines(args.cache, name, [doc.id for doc in docs]) for name, docs in sets.items()
    }
    print(f"(loaded in {time.perf_counter() - began:.0f} s)", flush=True)
    config = replace(SelectionConfig(), **json.loads(args.config))
    print("start:", config)
    report(sets, config, base)
    if args.search:
        tune = _splits(sets)["peps[:half]"]
        config = search(tune, config, json.loads(args.grid) if args.grid else GRID, args.rounds)
        changed = {
            f.name: getattr(config, f.name) for f in fields(config) if getattr(config, f.name) != f.default
        }
        print("tuned:", json.dumps(changed))
        report(sets, config, base)
    print(f"(took {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
