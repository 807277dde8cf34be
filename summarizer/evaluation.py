"""ROUGE of a model beside the baselines, on JSON-lines sets of documents and references.

Two sets ship with the repository in ``data/eval/`` (see its README): PEPs and KEPs, so that a fresh
clone can measure quality, and a change tuned on one set can be checked on the other.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from summarizer.baselines import BASELINES
from summarizer.errors import SummarizerError
from summarizer.types import Summarizer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# Beside the package in a checkout (editable install); a wheel does not carry them.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "eval"
SHIPPED_SETS = ("peps", "keps")


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


@dataclass(frozen=True)
class SetReport:
    """One set's scores: the baselines first, the model last."""

    name: str
    baselines: list[Scores]
    model: Scores

    def margin(self, metric: str) -> float:
        """The model's lead over the better baseline on ``metric`` (negative when behind)."""
        return float(getattr(self.model, metric) - max(getattr(row, metric) for row in self.baselines))


def shipped_set(name: str) -> Path:
    """The path of a set shipped in ``data/eval``; FileNotFoundError outside a checkout."""
    if name not in SHIPPED_SETS:
        raise ValueError(f"no shipped set {name!r}; the shipped sets are {', '.join(SHIPPED_SETS)}")
    path = SHIPPED_DIR / f"{name}.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped set {name!r} is not at {path}; it ships with the repository, not the package:"
            " run from a checkout or name a .jsonl file"
        )
    return path


def set_name(path: str | Path) -> str:
    """``peps`` for ``data/eval/peps.jsonl.gz`` or ``peps.jsonl``."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def load_eval_set(path: str | Path, limit: int | None = None) -> list[EvalDoc]:
    """Documents of a ``.jsonl`` or ``.jsonl.gz`` file with ``document`` and ``reference`` fields."""
    docs: list[EvalDoc] = []
    with _open(Path(path)) as handle:
        for number, line in enumerate(handle):
            if limit is not None and len(docs) >= limit:
                break
            if not line.strip():
                continue
            record: dict[str, Any] = json.loads(line)
            docs.append(EvalDoc(str(record.get("id", number)), record["document"], record["reference"]))
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


def table(reports: Iterable[SetReport], *, words: int) -> str:
    """One Markdown table: per set, each baseline, the model, and the model's margin on R2 and RL."""
    lines = [
        f"ROUGE F1 x100, {words}-word budget (rouge-score, stemmer on)",
        "",
        "| set | docs | system | R1 | R2 | RL |",
        "|---|---|---|---|---|---|",
    ]
    for report in reports:
        for row in [*report.baselines, report.model]:
            lines.append(
                f"| {report.name} | {row.documents} | {row.system} "
                f"| {row.rouge1:.2f} | {row.rouge2:.2f} | {row.rougeL:.2f} |"
            )
        lines.append(
            f"| {report.name} | {report.model.documents} | margin over the better baseline | "
            f"| {report.margin('rouge2'):+.2f} | {report.margin('rougeL'):+.2f} |"
        )
    return "\n".join(lines)
