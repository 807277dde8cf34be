"""A document's summary does not depend on what it is batched with, on the real default engine.

The gateway's micro-batcher and the workers both hand documents to ``summarize_batch`` in whatever
company arrives together; each document must come back byte for byte as it would alone. The export
is shared with the end-to-end tests (``var/models``), so it is built once per machine.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from summarizer import SummarizerSettings, SummaryResult, load_summarizer
from summarizer.evaluation import load_eval_set, shipped_set
from summarizer.extractive import ExtractiveSummarizer
from tests.fixtures.pipeline import MODEL_CACHE

pytestmark = pytest.mark.slow

COMPOSITIONS = 30


@pytest.fixture(scope="module")
def minilm() -> ExtractiveSummarizer:
    loaded = load_summarizer(SummarizerSettings(cache_dir=str(MODEL_CACHE)))
    assert isinstance(loaded, ExtractiveSummarizer)
    return loaded


def excerpts() -> list[str]:
    """Openings of real PEPs and KEPs, 60 to 240 words, and one sentence past the encoder's limit."""
    rng = random.Random(7)
    docs = [*load_eval_set(shipped_set("peps"), 10), *load_eval_set(shipped_set("keps"), 10)]
    texts = [" ".join(doc.document.split()[: rng.randint(60, 240)]) for doc in docs]
    # No sentence end for 400 words: past the encoder's limit, so embedded in pieces if kept whole.
    run_on = " ".join(docs[0].document.replace(".", ",").split()[:400])
    return [*texts, run_on + ". A short closing sentence follows the long one."]


def test_every_document_summarizes_the_same_alone_and_in_any_batch(minilm: ExtractiveSummarizer) -> None:
    texts = excerpts()
    # Mixed budgets in one batch, as on the gateway, where each request brings its own.
    params = [minilm.validate_params({"max_words": 25 + 15 * (i % 3)}) for i in range(len(texts))]
    alone: list[str] = []
    for text, doc_params in zip(texts, params, strict=True):
        (result,) = minilm.summarize_batch([text], doc_params)
        assert isinstance(result, SummaryResult)
        alone.append(result.summary)
    assert minilm.count_tokens(texts[-1]) > minilm.encoder.max_tokens

    rng = random.Random(2024)
    differing: list[tuple[int, list[int]]] = []
    for _ in range(COMPOSITIONS):
        # Any size, any order, sometimes the same document twice.
        picked = [rng.randrange(len(texts)) for _ in range(rng.randint(2, 9))]
        results = minilm.summarize_batch([texts[i] for i in picked], [params[i] for i in picked])
        for index, result in zip(picked, results, strict=True):
            assert isinstance(result, SummaryResult)
            if result.summary != alone[index]:
                differing.append((index, picked))
    assert differing == [], f"summaries changed with their batch mates: (doc, batch) {differing[:5]}"


def test_a_sentence_embeds_to_the_same_bits_whatever_its_batch_and_padding(
    minilm: ExtractiveSummarizer,
) -> None:
    encoder = minilm.encoder
    sentences = [
        sentence
        for doc in load_eval_set(shipped_set("keps"), 3)
        for sentence in doc.document.split(". ")
        if 3 <= len(sentence.split()) <= 60
    ][:48]
    pieces = encoder.tokenize(sentences)
    alone = [encoder.embed([piece])[0][0] for piece in pieces]
    rng = random.Random(5)
    for _ in range(12):
        rows = rng.sample(range(len(pieces)), rng.randint(2, 24))
        pooled, counts = encoder.embed([pieces[row] for row in rows])
        for position, row in enumerate(rows):
            assert np.array_equal(pooled[position], alone[row]), f"sentence {row} changed in batch {rows}"
            assert counts[position] == len(pieces[row]) + 2
