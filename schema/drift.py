"""Drift: compact statistics of each job, and how two windows of them compare.

Inputs: document length (characters, tokens), language, and the share of tokens the model's
vocabulary does not know. Outputs: summary length, compression ratio, redundancy (repeated word
trigrams) and whether the summary hit its length limit. A document-embedding centroid distance was
left out on purpose: the stats are computed in the worker's store transaction, and another encoder
pass per document would cost as much as the extractive summary itself; the language and
unknown-token shares already catch the shifts a centroid would (new language, new domain jargon).

Windows are compared per statistic with the Population Stability Index (reference-quantile bins
for numbers, categories for language and limit hits) and, for numbers, the two-sample
Kolmogorov-Smirnov statistic and its asymptotic p-value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

NUMERIC_STATS: tuple[str, ...] = (
    "input_chars",
    "input_tokens",
    "unknown_token_share",
    "summary_chars",
    "compression_ratio",
    "redundancy",
)
CATEGORICAL_STATS: tuple[str, ...] = ("language", "hit_length_limit")
ALL_STATS = NUMERIC_STATS + CATEGORICAL_STATS

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:\s|$)")
# Keeps empty bins from giving log(0): a share below this counts as this.
_PSI_FLOOR = 1e-4
_BINS = 10


@dataclass(frozen=True, slots=True)
class JobStats:
    job_id: str
    model_key: str
    finished_at: datetime
    input_chars: int
    input_tokens: int
    language: str | None
    unknown_token_share: float | None
    summary_chars: int
    compression_ratio: float
    redundancy: float
    hit_length_limit: bool

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def redundancy(text: str) -> float:
    """Share of word trigrams that repeat an earlier one: 0 for none, near 1 for a loop."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def hit_length_limit(summary: str, params: Mapping[str, Any], summary_tokens: int | None) -> bool:
    """Whether the summary stopped at the limit its parameters set rather than by itself."""
    if "max_new_tokens" in params and summary_tokens is not None:
        return summary_tokens >= int(params["max_new_tokens"]) - 1
    if "max_words" in params and len(_WORD.findall(summary)) >= int(params["max_words"]):
        return True
    if "max_sentences" in params:
        sentences = len(_SENTENCE_END.findall(summary.strip())) or (1 if summary.strip() else 0)
        return sentences >= int(params["max_sentences"])
    return False


def job_stats(
    *,
    job_id: str,
    model_key: str,
    finished_at: datetime,
    text: str,
    summary: str,
    input_tokens: int,
    language: str | None,
    unknown_token_share: float | None,
    params: Mapping[str, Any],
    summary_tokens: int | None = None,
) -> JobStats:
    chars = len(text)
    return JobStats(
        job_id=job_id,
        model_key=model_key[:255],
        finished_at=finished_at,
        input_chars=chars,
        input_tokens=input_tokens,
        language=language,
        unknown_token_share=unknown_token_share,
        summary_chars=len(summary),
        compression_ratio=len(summary) / chars if chars else 0.0,
        redundancy=redundancy(summary),
        hit_length_limit=hit_length_limit(summary, params, summary_tokens),
    )


# -- comparing windows ------------------------------------------------------------------------


def _psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _PSI_FLOOR), max(a, _PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def psi_categorical(reference: Sequence[Any], current: Sequence[Any]) -> float:
    ref, cur = Counter(reference), Counter(current)
    categories = sorted(set(ref) | set(cur), key=str)
    n_ref, n_cur = len(reference), len(current)
    return _psi([ref[c] / n_ref for c in categories], [cur[c] / n_cur for c in categories])


def psi_numeric(reference: Sequence[float], current: Sequence[float], bins: int = _BINS) -> float:
    """PSI over bins cut at the reference's quantiles (equal-mass bins, robust to skew)."""
    ordered = sorted(reference)
    edges = sorted({ordered[min(len(ordered) - 1, int(len(ordered) * q / bins))] for q in range(1, bins)})

    def shares(values: Sequence[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for value in values:
            lo, hi = 0, len(edges)
            while lo < hi:  # the first edge above the value
                mid = (lo + hi) // 2
                if value < edges[mid]:
                    hi = mid
                else:
                    lo = mid + 1
            counts[lo] += 1
        return [c / len(values) for c in counts]

    return _psi(shares(reference), shares(current))


def ks_two_sample(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """The KS statistic D and its asymptotic p-value (Kolmogorov distribution, Stephens' correction)."""
    a, b = sorted(reference), sorted(current)
    n, m = len(a), len(b)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        value = min(a[i], b[j])
        while i < n and a[i] <= value:
            i += 1
        while j < m and b[j] <= value:
            j += 1
        d = max(d, abs(i / n - j / m))
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * d
    if lam < 1e-3:
        return d, 1.0
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, min(1.0, max(0.0, p))


@dataclass(frozen=True)
class StatDrift:
    statistic: str
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    moved: bool


@dataclass(frozen=True)
class ModelDrift:
    model_key: str
    reference_jobs: int
    current_jobs: int
    # Empty when either window has fewer than min_jobs: no verdict.
    stats: tuple[StatDrift, ...]

    @property
    def moved(self) -> tuple[str, ...]:
        return tuple(s.statistic for s in self.stats if s.moved)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_key,
            "reference_jobs": self.reference_jobs,
            "current_jobs": self.current_jobs,
            "moved": list(self.moved),
            "stats": [
                {
                    "statistic": s.statistic,
                    "psi": round(s.psi, 6),
                    "ks_statistic": None if s.ks_statistic is None else round(s.ks_statistic, 6),
                    "ks_pvalue": s.ks_pvalue,
                    "moved": s.moved,
                }
                for s in self.stats
            ],
        }


def compare(
    model_key: str,
    reference: Sequence[JobStats],
    current: Sequence[JobStats],
    *,
    psi_threshold: float,
    ks_alpha: float,
    min_jobs: int,
) -> ModelDrift:
    if len(reference) < min_jobs or len(current) < min_jobs:
        return ModelDrift(model_key, len(reference), len(current), ())
    results = []
    for name in CATEGORICAL_STATS:
        psi = psi_categorical([getattr(s, name) for s in reference], [getattr(s, name) for s in current])
        results.append(StatDrift(name, psi, None, None, psi > psi_threshold))
    for name in NUMERIC_STATS:
        ref = [float(v) for v in (getattr(s, name) for s in reference) if v is not None]
        cur = [float(v) for v in (getattr(s, name) for s in current) if v is not None]
        if len(ref) < min_jobs or len(cur) < min_jobs:
            continue
        psi = psi_numeric(ref, cur)
        d, p = ks_two_sample(ref, cur)
        results.append(StatDrift(name, psi, d, p, psi > psi_threshold or p < ks_alpha))
    return ModelDrift(model_key, len(reference), len(current), tuple(results))
