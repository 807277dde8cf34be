"""Reference systems that every quality measurement reports beside the model.

Both split sentences the simple way (end punctuation and blank lines), drop sentences under five
words, take sentences while they fit the word budget and print them in document order, so that the
figures are comparable with published baseline tables.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from summarizer.select import fit_budget

MIN_WORDS = 5
_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the this to was were will
    with not can may if which be been but they their there these those than then so such""".split()
)


def simple_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        joined = " ".join(paragraph.split())
        sentences.extend(s for s in _SPLIT.split(joined) if len(s.split()) >= MIN_WORDS)
    return sentences


def _join(sentences: Sequence[str], picked: Sequence[int]) -> str:
    return " ".join(sentences[i] for i in sorted(picked))


def lead(text: str, max_words: int) -> str:
    """The first sentences of the document up to the budget."""
    sentences = simple_sentences(text)
    return _join(sentences, fit_budget(range(len(sentences)), [len(s.split()) for s in sentences], max_words))


def _tfidf(sentences: Sequence[str]) -> np.ndarray:
    bags = [Counter(w for w in _WORD.findall(s.lower()) if w not in _STOPWORDS) for s in sentences]
    vocabulary = {word: i for i, word in enumerate(sorted({w for bag in bags for w in bag}))}
    df = Counter(word for bag in bags for word in bag)
    n = len(sentences)
    matrix = np.zeros((n, max(len(vocabulary), 1)), dtype=np.float32)
    for row, bag in enumerate(bags):
        for word, count in bag.items():
            matrix[row, vocabulary[word]] = (1 + math.log(count)) * (math.log((1 + n) / (1 + df[word])) + 1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def pagerank(similarity: np.ndarray, *, damping: float = 0.85, iterations: int = 50) -> np.ndarray:
    weights = similarity.copy()
    np.fill_diagonal(weights, 0.0)
    sums = weights.sum(axis=1, keepdims=True)
    n = len(weights)
    transition = np.where(sums > 0, weights / np.maximum(sums, 1e-12), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        scores = (1 - damping) / n + damping * transition.T @ scores
    return scores


def textrank(text: str, max_words: int) -> str:
    """TF-IDF TextRank: PageRank over cosine similarities of TF-IDF sentence vectors."""
    sentences = simple_sentences(text)
    if not sentences:
        return ""
    vectors = _tfidf(sentences)
    scores = pagerank(vectors @ vectors.T)
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    return _join(sentences, fit_budget(ranked, [len(s.split()) for s in sentences], max_words))


BASELINES = {"lead": lead, "textrank-tfidf": textrank}
