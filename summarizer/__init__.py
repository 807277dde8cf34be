"""The summarization engine both the HTTP sync path and the Kafka workers use.

>>> summarizer = load_summarizer(settings.summarizer)      # once per process
>>> params = summarizer.validate_params({"max_words": 80})
>>> results = summarizer.summarize_batch(texts, params)    # SummaryResult or an error per text

Unit tests of other packages use :class:`summarizer.testing.FakeSummarizer` instead.
"""

from __future__ import annotations

from summarizer.errors import (
    Canceled,
    InvalidDocumentError,
    InvalidParamsError,
    OutOfMemory,
    SummarizerConfigError,
    SummarizerError,
    SummarizerPermanentError,
    SummarizerRetryableError,
)
from summarizer.loader import load_summarizer
from summarizer.types import ModelInfo, Summarizer, SummaryParams, SummaryResult

__all__ = [
    "Canceled",
    "InvalidDocumentError",
    "InvalidParamsError",
    "ModelInfo",
    "OutOfMemory",
    "Summarizer",
    "SummarizerConfigError",
    "SummarizerError",
    "SummarizerPermanentError",
    "SummarizerRetryableError",
    "SummaryParams",
    "SummaryResult",
    "load_summarizer",
]
