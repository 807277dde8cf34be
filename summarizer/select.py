"""Choosing sentences from their embeddings.

The default was chosen by ROUGE on PEP documents with human abstracts (see ``condense eval``):
similarity to the document centroid, a prior for early sentences (introductions state the point),
and a redundancy penalty against sentences already picked (MMR), over sentences of a sensible
length. The chosen sentences are returned in document order. ``words`` are word units
(:func:`summarizer.language.count_words`: a CJK character counts as one word).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from summarizer.language import count_words, truncate_words
from summarizer.segment import join_units


@dataclass(frozen=True)
class SelectionConfig:
    min_words: int = 5
    max_words: int = 60
    position_weight: float = 0.15
    position_scale: float = 20.0
    redundancy: float = 0.3
    # Sentences this similar to one already picked are skipped outright.
    duplicate_threshold: float = 0.92


def fit_budget(
    ranked: Sequence[int], words: Sequence[int], max_words: int, max_sentences: int | None = None
) -> list[int]:
    """Take indices in ``ranked`` order while they fit in ``max_words``; skip the ones that do not."""
    picked: list[int] = []
    total = 0
    for index in ranked:
        if max_sentences is not None and len(picked) >= max_sentences:
            break
        if total + words[index] <= max_words:
            picked.append(index)
            total += words[index]
        if max_words - total < 3:
            break
    return picked


def select(
    embeddings: np.ndarray,
    words: Sequence[int],
    positions: Sequence[int],
    *,
    max_words: int,
    max_sentences: int | None = None,
    config: SelectionConfig = SelectionConfig(),
) -> list[int]:
    """Indices (into ``embeddings``) of the sentences to keep, in ascending order.

    ``embeddings`` are L2-normalised rows; ``positions`` the rank of each sentence in the document.
    """
    count = len(words)
    if count == 0:
        return []
    eligible = np.array([config.min_words <= w <= config.max_words for w in words])
    if not eligible.any():
        eligible = np.ones(count, dtype=bool)
    centroid = embeddings[eligible].mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    relevance = embeddings @ centroid
    prior = config.position_weight / (1.0 + np.asarray(positions, dtype=np.float32) / config.position_scale)
    base = relevance + prior
    base[~eligible] = -np.inf

    picked: list[int] = []
    total = 0
    max_sim = np.zeros(count, dtype=np.float32)
    available = eligible.copy()
    while available.any():
        if max_sentences is not None and len(picked) >= max_sentences:
            break
        score = np.where(available, base - config.redundancy * max_sim, -np.inf)
        best = int(np.argmax(score))
        available[best] = False
        if total + words[best] > max_words or (picked and max_sim[best] >= config.duplicate_threshold):
            continue
        picked.append(best)
        total += words[best]
        max_sim = np.maximum(max_sim, embeddings @ embeddings[best])
        if max_words - total < 3:
            break
    if not picked:
        # No sentence of a sensible length fits: whole shorter ones that fit, best first; failing
        # those, the best sentence alone, for the caller to cut.
        scores = relevance + prior
        fitting = fit_budget(np.argsort(-scores, kind="stable").tolist(), words, max_words, max_sentences)
        return sorted(fitting) or [int(np.argmax(np.where(np.isfinite(base), base, scores)))]
    return sorted(picked)


def summarize_units(
    units: Sequence[str],
    embeddings: np.ndarray,
    *,
    whole: Sequence[str],
    max_words: int,
    max_sentences: int | None = None,
    config: SelectionConfig = SelectionConfig(),
) -> str:
    """The summary text of a document.

    ``units`` are its candidate sentences (:func:`summarizer.segment.summary_units`) with their
    embeddings; ``whole`` is the document as units, returned as it is when it fits the budget.
    Otherwise the selected units come out whole, in document order; only when not one unit fits
    the budget is the best one cut to it, ending in "…" to show the cut.
    """
    if sum(count_words(text) for text in whole) <= max_words and (
        max_sentences is None or len(whole) <= max_sentences
    ):
        return join_units(whole, close_last=False)
    words = [count_words(text) for text in units]
    chosen = select(
        embeddings,
        words,
        list(range(len(units))),
        max_words=max_words,
        max_sentences=max_sentences,
        config=config,
    )
    if len(chosen) == 1 and words[chosen[0]] > max_words:
        return truncate_words(units[chosen[0]], max_words) + "…"
    return join_units([units[i] for i in chosen])
