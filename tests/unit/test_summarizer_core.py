"""The model-free parts of the engine: segmentation, params, chunking, batching, baselines, the fake."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from summarizer import (
    CanceledError,
    InvalidDocumentError,
    InvalidParamsError,
    OutOfMemoryError,
    SummarizationFailedError,
    SummarizerConfigError,
    SummarizerError,
    SummarizerSettings,
    SummarizerUnavailableError,
    SummaryResult,
)
from summarizer.baselines import lead, simple_sentences, textrank
from summarizer.batching import token_batches
from summarizer.chunking import chunk_units
from summarizer.segment import segment, split_paragraph
from summarizer.select import fit_budget, select
from summarizer.testing import FakeSummarizer
from summarizer.types import SummaryParams, parse_params

# -- segmentation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Use a list, e.g. this one. It works.", ["Use a list, e.g. this one.", "It works."]),
        ("That is, i.e. Python 3.12 here. Next one.", ["That is, i.e. Python 3.12 here.", "Next one."]),
        ("Ask Dr. Smith about it. She knows.", ["Ask Dr. Smith about it.", "She knows."]),
        ("Pi is 3.14159 roughly. Yes.", ["Pi is 3.14159 roughly.", "Yes."]),
        ("See https://example.org/a.b?c=d. Then go.", ["See https://example.org/a.b?c=d.", "Then go."]),
        ("Really? Yes! Fine.", ["Really?", "Yes!", "Fine."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Written by J. R. Tolkien in 1954. True.", ["Written by J. R. Tolkien in 1954.", "True."]),
        ("lower case after period. does not split", ["lower case after period. does not split"]),
    ],
)
def test_split_paragraph_handles_abbreviations_decimals_urls(text: str, expected: list[str]) -> None:
    assert split_paragraph(text) == expected


MARKDOWN = """# Title of the document

Intro sentence one is here. Intro sentence two follows.

```python
def code(): return "Not. A. Sentence."
```

- First bullet item without end
- Second bullet item that continues
  on the next line.

| a | b |
|---|---|
| 1 | 2 |
"""

RST = """Rationale
=========

The proposal adds a thing. It is shown here::

    x = compute(1.5)
    print("Not a sentence.")

After the literal block comes prose.

.. code-block:: python

    y = 2

.. note::

   Notes are prose and are kept.

Sub heading
-----------

Final sentence here.
"""


def test_markdown_headings_code_bullets_tables() -> None:
    segments = segment(MARKDOWN)
    texts = [s.text for s in segments]
    assert segments[0].heading and texts[0] == "Title of the document"
    assert "Intro sentence one is here." in texts
    assert "Second bullet item that continues on the next line." in texts
    assert "First bullet item without end" in texts  # a bullet never glues onto the next one
    assert not any("code()" in t or "Not. A." in t or "|" in t for t in texts)


def test_rst_underlines_literal_blocks_and_directives() -> None:
    segments = segment(RST)
    texts = [s.text for s in segments]
    headings = [s.text for s in segments if s.heading]
    assert headings == ["Rationale", "Sub heading"]
    assert "It is shown here:" in texts
    assert "After the literal block comes prose." in texts
    assert "Notes are prose and are kept." in texts
    assert "Final sentence here." in texts
    assert not any("compute" in t or "y = 2" in t or "Not a sentence" in t for t in texts)


def test_segments_keep_document_order() -> None:
    texts = [s.text for s in segment("A one two three. B four five six.\n\nC seven eight nine.")]
    assert texts == ["A one two three.", "B four five six.", "C seven eight nine."]


# -- params ------------------------------------------------------------------------------------


def test_params_defaults_ranges_and_round_trip() -> None:
    params = parse_params({}, kind="extractive", model_name="m", defaults={"max_words": 100})
    assert params.max_words == 100 and params.max_new_tokens is None
    again = parse_params(params.model_dump(exclude_none=True), kind="extractive", model_name="m", defaults={})
    assert again == params
    assert (
        parse_params({"max_sentences": 3}, kind="extractive", model_name="m", defaults={}).max_sentences == 3
    )


@pytest.mark.parametrize(
    ("kind", "params", "key"),
    [
        ("extractive", {"max_words": 0}, "max_words"),
        ("extractive", {"max_words": 5001}, "max_words"),
        ("extractive", {"max_sentences": 501}, "max_sentences"),
        ("extractive", {"max_words": "100"}, "max_words"),
        ("extractive", {"num_beams": 4}, "num_beams"),
        ("extractive", {"temperature": 1.0}, "temperature"),
        ("abstractive", {"max_words": 50}, "max_words"),
        ("abstractive", {"num_beams": 9}, "num_beams"),
        ("abstractive", {"max_new_tokens": 1025}, "max_new_tokens"),
        ("abstractive", {"no_repeat_ngram_size": 11}, "no_repeat_ngram_size"),
        ("abstractive", {"length_penalty": 5.5}, "length_penalty"),
        ("abstractive", {"min_length": -1}, "min_length"),
    ],
)
def test_invalid_params_name_the_key(kind: str, params: dict[str, object], key: str) -> None:
    fake = FakeSummarizer(kind=kind)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamsError) as caught:
        fake.validate_params(params)
    assert caught.value.code == "invalid_params"
    assert key in caught.value.message
    assert caught.value.retryable is False


def test_min_length_above_max_new_tokens_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="min_length"):
        FakeSummarizer(kind="abstractive").validate_params({"min_length": 50, "max_new_tokens": 10})


def test_params_must_be_an_object() -> None:
    with pytest.raises(InvalidParamsError):
        FakeSummarizer().validate_params([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (OutOfMemoryError("x"), "out_of_memory", True),
        (SummarizerUnavailableError("x"), "summarizer_unavailable", True),
        (SummarizationFailedError("x"), "summarization_failed", False),
        (InvalidParamsError("x"), "invalid_params", False),
        (InvalidDocumentError("x"), "invalid_document", False),
        (CanceledError("x"), "canceled", False),
        (SummarizerConfigError("x"), "summarizer_config_error", False),
    ],
)
def test_errors_carry_a_stable_code_and_whether_to_retry(
    error: SummarizerError, code: str, retryable: bool
) -> None:
    assert isinstance(error, SummarizerError)
    assert (error.code, error.retryable, error.message) == (code, retryable, "x")
    assert error.to_dict() == {"error": {"code": code, "message": "x"}}


def test_an_error_instance_may_override_its_retry_flag() -> None:
    assert SummarizationFailedError("busy", retryable=True).retryable is True
    assert SummarizationFailedError("broken").retryable is False


# -- settings ----------------------------------------------------------------------------------


def test_settings_validate_without_the_service() -> None:
    settings = SummarizerSettings(model="/models/bart", max_batch_tokens=64)
    assert (settings.model, settings.max_batch_tokens, settings.backend) == ("/models/bart", 64, "auto")
    with pytest.raises(ValidationError, match="max_batch_tokens"):
        SummarizerSettings(max_batch_tokens=63)
    with pytest.raises(ValidationError, match="modle"):
        SummarizerSettings(modle="minilm")  # type: ignore[call-arg]


# -- chunking and batching ---------------------------------------------------------------------


def test_chunks_cover_every_token_within_the_limit() -> None:
    # Distinct, increasing token ids make coverage and order easy to check.
    sizes = [5, 9, 30, 3, 7, 12, 1, 8]
    ids = iter(range(1, 1 + sum(sizes)))
    units = [[next(ids) for _ in range(n)] for n in sizes]
    chunks = chunk_units(units, limit=10, overlap=3)
    assert all(0 < len(chunk) <= 10 for chunk in chunks)
    assert {t for chunk in chunks for t in chunk} == {t for unit in units for t in unit}
    for chunk in chunks:
        assert chunk == list(range(chunk[0], chunk[0] + len(chunk)))  # contiguous, in order
    assert [c[0] for c in chunks] == sorted(c[0] for c in chunks)
    overlapped = sum(len(set(a) & set(b)) for a, b in itertools.pairwise(chunks))
    assert overlapped > 0


def test_chunks_break_on_unit_boundaries_and_overlap() -> None:
    units = [[1] * 4, [2] * 4, [3] * 4, [4] * 4]
    chunks = chunk_units(units, limit=8, overlap=4)
    assert chunks[0] == [1] * 4 + [2] * 4
    assert chunks[1][:4] == [2] * 4  # the previous unit is repeated
    assert chunk_units(units, limit=8, overlap=0) == [[1] * 4 + [2] * 4, [3] * 4 + [4] * 4]


def test_token_batches_respect_budget_and_sort_by_length() -> None:
    lengths = [50, 5, 30, 5, 200, 10]
    batches = token_batches(lengths, max_batch_tokens=60)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 60
    assert batches[0] == [1, 3, 5]


def test_fit_budget_skips_sentences_that_do_not_fit() -> None:
    assert fit_budget([0, 1, 2], [60, 50, 30], max_words=100) == [0, 2]
    assert fit_budget([0, 1, 2], [10, 10, 10], max_words=100, max_sentences=2) == [0, 1]


def test_select_takes_a_short_sentence_that_fits_before_cutting_a_long_one() -> None:
    embeddings = np.eye(3, dtype=np.float32)
    assert select(embeddings, [30, 3, 40], [0, 1, 2], max_words=10) == [1]
    # Nothing fits at all: the best sentence alone, for the caller to cut.
    assert len(select(embeddings, [30, 20, 40], [0, 1, 2], max_words=10)) == 1


# -- baselines ---------------------------------------------------------------------------------

DOC = (
    "Queues hold jobs until a worker is free to run them.\n\n"
    "Workers take jobs from the queues and run them in batches. Short. "
    "Batches of jobs make the workers efficient on the hardware. "
    "Results of the jobs are stored in the database for later."
)


def test_lead_takes_first_sentences_dropping_short_ones() -> None:
    assert simple_sentences(DOC)[1] == "Workers take jobs from the queues and run them in batches."
    assert "Short." not in simple_sentences(DOC)
    assert lead(DOC, 25) == (
        "Queues hold jobs until a worker is free to run them. "
        "Workers take jobs from the queues and run them in batches."
    )


def test_textrank_prefers_central_sentences_in_document_order() -> None:
    summary = textrank(DOC, 12)
    assert summary in simple_sentences(DOC)
    assert "jobs" in summary
    two = textrank(DOC, 24).split(". ")
    assert len(two) == 2


# -- the fake ----------------------------------------------------------------------------------


def test_fake_summarizer_is_deterministic_and_reports_progress() -> None:
    fake = FakeSummarizer(words_per_chunk=3)
    params = fake.validate_params({"max_words": 4})
    seen: list[tuple[int, int, int]] = []
    results = fake.summarize_batch(
        ["one two three four five six seven", "alpha beta"], params, on_progress=lambda *a: seen.append(a)
    )
    assert isinstance(results[0], SummaryResult) and results[0].summary == "one two three four"
    assert isinstance(results[1], SummaryResult) and results[1].summary == "alpha beta"
    assert results[0].chunks == 3 and seen[:3] == [(0, 1, 3), (0, 2, 3), (0, 3, 3)]
    assert fake.count_tokens("a b c") == 4


def test_fake_failures_cancel_and_oom() -> None:
    poison = InvalidDocumentError("bad")
    fake = FakeSummarizer(failures={"POISON": poison}, oom_over_docs=2)
    params = fake.validate_params({})
    results = fake.summarize_batch(["fine text", "POISON here"], params)
    assert isinstance(results[0], SummaryResult) and results[1] is poison
    with pytest.raises(OutOfMemoryError):
        fake.summarize_batch(["a", "b", "c"], params)
    canceled = fake.summarize_batch(["a b", "c d"], params, should_cancel=lambda i: i == 1)
    assert isinstance(canceled[0], SummaryResult) and isinstance(canceled[1], CanceledError)
    flaky = FakeSummarizer(failures={"FLAKY": OutOfMemoryError("x")}, fail_times=1)
    assert isinstance(flaky.summarize_batch(["FLAKY"], params)[0], OutOfMemoryError)
    assert isinstance(flaky.summarize_batch(["FLAKY"], params)[0], SummaryResult)


def test_params_model_is_frozen_and_forbids_extra() -> None:
    with pytest.raises(ValueError, match="extra"):
        SummaryParams.model_validate({"nope": 1})
