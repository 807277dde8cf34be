"""The summarization engine both the HTTP sync path and the Kafka workers use.

>>> summarizer = load_summarizer(settings.summarizer)      # once per process
>>> params = summarizer.validate_params({"max_words": 80})
>>> results = summarizer.summarize_batch(texts, params)    # SummaryResult or an error per text

Unit tests of other packages use :class:`summarizer.testing.FakeSummarizer` instead.
"""

from __future__ import annotations

from summarizer.errors import (
    CanceledError,
    InvalidDocumentError,
    InvalidParamsError,
    OutOfMemoryError,
    SummarizationFailedError,
    SummarizerConfigError,
    SummarizerError,
    SummarizerUnavailableError,
)
from summarizer.loader import load_summarizer
from summarizer.settings import SummarizerSettings
from summarizer.types import ModelInfo, Summarizer, SummaryParams, SummaryResult

__all__ = [
    "CanceledError",
    "InvalidDocumentError",
    "InvalidParamsError",
    "ModelInfo",
    "OutOfMemoryError",
    "SummarizationFailedError",
    "Summarizer",
    "SummarizerConfigError",
    "SummarizerError",
    "SummarizerSettings",
    "SummarizerUnavailableError",
    "SummaryParams",
    "SummaryResult",
    "load_summarizer",
]
