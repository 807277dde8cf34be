"""ROUGE measurement of a model beside the baselines, on a JSON-lines set of documents and references."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summarizer.baselines import BASELINES
from summarizer.errors import SummarizerError
from summarizer.types import Summarizer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class EvalDoc:
    id: str
    document: str
    reference: str


@dataclass(frozen=True)
class Scores:
    system: str
    rouge1: float
    rouge2: float
    rougeL: float  # the metric's own spelling
    documents: int

    def row(self) -> str:
        return f"| {self.system} | {self.rouge1:.2f} | {self.rouge2:.2f} | {self.rougeL:.2f} |"


def load_eval_set(path: str | Path, limit: int | None = None) -> list[EvalDoc]:
    docs: list[EvalDoc] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            record: dict[str, Any] = json.loads(line)
            docs.append(EvalDoc(str(record.get("id", number)), record["document"], record["reference"]))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def score(system: str, summaries: Sequence[str], references: Sequence[str]) -> Scores:
    """Mean ROUGE-1/2/L F1 x100 (stemmed), as the published baseline tables report it."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for summary, reference in zip(summaries, references, strict=True):
        result = scorer.score(reference, summary)
        for key in ROUGE_TYPES:
            totals[key] += result[key].fmeasure
    n = max(1, len(summaries))
    rouge1, rouge2, rouge_l = (100 * totals[key] / n for key in ROUGE_TYPES)
    return Scores(system, rouge1, rouge2, rouge_l, documents=len(summaries))


def model_summaries(
    summarizer: Summarizer,
    docs: Sequence[EvalDoc],
    params: dict[str, Any],
    *,
    batch_docs: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """The model's summary of every document ("" where it failed, which scores zero)."""
    validated = summarizer.validate_params(params)
    out: list[str] = []
    for start in range(0, len(docs), batch_docs):
        batch = docs[start : start + batch_docs]
        for result in summarizer.summarize_batch([doc.document for doc in batch], validated):
            out.append("" if isinstance(result, SummarizerError) else result.summary)
        if progress is not None:
            progress(len(batch))
    return out


def baseline_scores(docs: Sequence[EvalDoc], words: int) -> list[Scores]:
    references = [doc.reference for doc in docs]
    return [
        score(name, [system(doc.document, words) for doc in docs], references)
        for name, system in BASELINES.items()
    ]


def table(rows: Iterable[Scores], *, words: int) -> str:
    rows = list(rows)
    count = rows[0].documents if rows else 0
    lines = [
        f"ROUGE F1 x100 on {count} documents, {words}-word budget (rouge-score, stemmer on)",
        "",
        "| system | R1 | R2 | RL |",
        "|---|---|---|---|",
        *(row.row() for row in rows),
    ]
    return "\n".join(lines)
