"""Choosing sentences from their embeddings.

A sentence's score adds up its cosine to the document centroid, its directed (PacSum) centrality
(similar to much of what follows it, not a repeat of what came before), a prior for early
sentences and one for the opening sentences of each section (introductions and section openings
state the point), less a penalty for code and URLs. Sentences are then picked greedily with a
redundancy penalty against those already picked (MMR), among candidates of a sensible length,
and returned in document order. The knobs were tuned by ROUGE on the first half of the shipped PEPs
only and checked on the other half and on the KEPs (``benchmarks/quality_tune.py``,
docs/benchmarks.md). ``words`` are word units (:func:`summarizer.language.count_words`: a CJK
character counts as one word).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from summarizer.language import count_words, truncate_words
from summarizer.segment import Segment, join_units


@dataclass(frozen=True)
class SelectionConfig:
    min_words: int = 5
    # Longest colon sentence joined with its list into one candidate.
    max_words: int = 60
    # Longest candidate a summary takes: shorter sentences leave room for more points.
    pick_max_words: int = 50
    # Weight of the cosine to the document centroid.
    centroid_weight: float = 1.0
    # Directed centrality (PacSum): edges above the threshold count towards the sentence, those to
    # earlier sentences with ``forward_weight``, to later ones with ``backward_weight``; the sum is
    # scaled to [0, 1] per document before ``centrality_weight`` applies.
    centrality_weight: float = 0.5
    forward_weight: float = -0.5
    backward_weight: float = 1.0
    # Fraction of the way from the document's lowest to its highest similarity an edge must reach.
    edge_threshold: float = 0.5
    position_weight: float = 0.25
    position_scale: float = 20.0
    # Prior for the first sentences of each section, and for the early sections.
    section_weight: float = 0.2
    section_scale: float = 2.0
    section_order_scale: float = 1e9
    # Penalty for sentences made of code, URLs and markup rather than words.
    boilerplate_penalty: float = 0.1
    # Sentences whose cosine to the centroid is under this fraction of the document's best are never
    # picked: a short off-topic sentence would otherwise fill what is left of the budget.
    relevance_floor: float = 0.6
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


_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
# A token that reads as code: call parentheses, dotted or underscored names, flags, paths, operators.
_CODE_TOKEN = re.compile(r"\w\(|\w\.\w|\w_\w|^--?\w|/\w|[{}<>=\[\]|$#@]")


def boilerplate(text: str) -> float:
    """How much ``text`` is code, URLs and markup rather than prose, from 0 to 1."""
    tokens = text.split()
    if not tokens:
        return 1.0
    if _URL.search(text):
        return 1.0
    return sum(1 for token in tokens if _CODE_TOKEN.search(token)) / len(tokens)


def directed_centrality(
    similarity: np.ndarray, *, forward_weight: float, backward_weight: float, threshold: float
) -> np.ndarray:
    """PacSum's position-aware centrality of each sentence, scaled to [0, 1].

    ``similarity[i, j]`` between sentences i and j in document order. Edges are cut at ``threshold``
    of the way from the lowest to the highest off-diagonal similarity; what remains of an edge to an
    earlier sentence counts ``forward_weight``, to a later one ``backward_weight``. A negative
    forward weight favours sentences that what follows elaborates on over ones that repeat what
    came before (Zheng and Lapata, 2019).
    """
    count = len(similarity)
    if count < 2:
        return np.zeros(count, dtype=np.float32)
    off = ~np.eye(count, dtype=bool)
    low = float(similarity[off].min())
    high = float(similarity[off].max())
    edges = np.maximum(similarity - (low + threshold * (high - low)), 0.0)
    edges[~off] = 0.0
    earlier = np.tril(edges, k=-1).sum(axis=1)
    later = np.triu(edges, k=1).sum(axis=1)
    raw = forward_weight * earlier + backward_weight * later
    spread = float(raw.max() - raw.min())
    if spread <= 1e-12:
        return np.zeros(count, dtype=np.float32)
    return ((raw - raw.min()) / spread).astype(np.float32)


def section_numbers(units: Sequence[Segment], segments: Sequence[Segment]) -> list[int]:
    """For each unit, how many headings of ``segments`` (all of the document's) come before it."""
    starts = np.array(sorted(item.block for item in segments if item.heading), dtype=np.int64)
    return [int(np.searchsorted(starts, unit.block, side="left")) for unit in units]


def section_ranks(sections: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each sentence's rank within its section and its section's rank among those with sentences."""
    within: list[int] = []
    order: list[int] = []
    seen: dict[int, int] = {}
    counts: dict[int, int] = {}
    for section in sections:
        seen.setdefault(section, len(seen))
        within.append(counts.get(section, 0))
        counts[section] = within[-1] + 1
        order.append(seen[section])
    return np.asarray(within, dtype=np.float32), np.asarray(order, dtype=np.float32)


def scores(
    embeddings: np.ndarray,
    words: Sequence[int],
    positions: Sequence[int],
    *,
    sections: Sequence[int] | None = None,
    texts: Sequence[str] | None = None,
    config: SelectionConfig = SelectionConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Each sentence's score before redundancy control, and which are of a sensible length."""
    count = len(words)
    eligible = np.array([config.min_words <= w <= config.pick_max_words for w in words])
    if not eligible.any():
        eligible = np.ones(count, dtype=bool)
    centroid = embeddings[eligible].mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    relevance = embeddings @ centroid
    total = config.centroid_weight * relevance
    total += config.position_weight / (1.0 + np.asarray(positions, dtype=np.float32) / config.position_scale)
    if config.centrality_weight:
        # Over eligible sentences only: fragments and long lists would otherwise pull edges.
        keep = np.flatnonzero(eligible)
        central = np.zeros(count, dtype=np.float32)
        central[keep] = directed_centrality(
            embeddings[keep] @ embeddings[keep].T,
            forward_weight=config.forward_weight,
            backward_weight=config.backward_weight,
            threshold=config.edge_threshold,
        )
        total += config.centrality_weight * central
    if config.section_weight and sections is not None:
        within, order = section_ranks(sections)
        total += (
            config.section_weight
            / (1.0 + within / config.section_scale)
            / (1.0 + order / config.section_order_scale)
        )
    if config.boilerplate_penalty and texts is not None:
        total -= config.boilerplate_penalty * np.array(
            [boilerplate(text) for text in texts], dtype=np.float32
        )
    if config.relevance_floor:
        best = float(relevance[eligible].max())
        if best > 0:
            floor = relevance >= config.relevance_floor * best
            if (eligible & floor).any():
                eligible &= floor
    return total.astype(np.float32), eligible


def select(
    embeddings: np.ndarray,
    words: Sequence[int],
    positions: Sequence[int],
    *,
    max_words: int,
    max_sentences: int | None = None,
    sections: Sequence[int] | None = None,
    texts: Sequence[str] | None = None,
    config: SelectionConfig = SelectionConfig(),
) -> list[int]:
    """Indices (into ``embeddings``) of the sentences to keep, in ascending order.

    ``embeddings`` are L2-normalised rows; ``positions`` the rank of each sentence in the document;
    ``sections`` numbers the section each sentence is in (non-decreasing) and ``texts`` are the
    sentences, both optional, for the section prior and the boilerplate penalty.
    """
    count = len(words)
    if count == 0:
        return []
    plain, eligible = scores(embeddings, words, positions, sections=sections, texts=texts, config=config)
    base = plain.copy()
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
        fitting = fit_budget(np.argsort(-plain, kind="stable").tolist(), words, max_words, max_sentences)
        return sorted(fitting) or [int(np.argmax(np.where(np.isfinite(base), base, plain)))]
    return sorted(picked)


def summarize_units(
    units: Sequence[str],
    embeddings: np.ndarray,
    *,
    whole: Sequence[str],
    max_words: int,
    max_sentences: int | None = None,
    sections: Sequence[int] | None = None,
    config: SelectionConfig = SelectionConfig(),
) -> str:
    """The summary text of a document.

    ``units`` are its candidate sentences (:func:`summarizer.segment.summary_units`) with their
    embeddings, ``sections`` the number of the section each is in; ``whole`` is the document as units, returned as it is when it fits the budget.
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
        sections=sections,
        texts=units,
        config=config,
    )
    if len(chosen) == 1 and words[chosen[0]] > max_words:
        return truncate_words(units[chosen[0]], max_words) + "…"
    return join_units([units[i] for i in chosen])
