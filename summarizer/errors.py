"""Errors of the summarization engine.

Every error is a :class:`SummarizerError`. Whether the same work may succeed later is its
``retryable`` flag; what an error means to an HTTP client is for the service to decide from ``code``.
"""

from __future__ import annotations

from common.errors import CondenseError


class SummarizerError(CondenseError):
    """Base of every error the summarizer raises or returns as a batch entry."""

    code = "summarizer_error"


class SummarizerUnavailableError(SummarizerError):
    """The engine cannot do the work right now (a busy or failing device); it may succeed later."""

    code = "summarizer_unavailable"
    retryable = True


class OutOfMemoryError(SummarizerError):
    """The accelerator ran out of memory; retry the documents in smaller batches.

    Raised (never returned as an entry) by ``summarize_batch``: the whole call failed, so the caller
    splits the batch and tries again.
    """

    code = "out_of_memory"
    retryable = True


class SummarizationFailedError(SummarizerError):
    """The model could not summarize this document; retrying the same input cannot help."""

    code = "summarization_failed"


class InvalidParamsError(SummarizerError):
    """A summary parameter is unknown, belongs to the other model family, or is out of range."""

    code = "invalid_params"


class InvalidDocumentError(SummarizerError):
    """The document cannot be summarized (empty, not text, nothing but code or markup)."""

    code = "invalid_document"


class CanceledError(SummarizerError):
    """``should_cancel`` asked to stop this document; the work done so far is discarded."""

    code = "canceled"


class SummarizerConfigError(SummarizerError):
    """The model setting points at something that cannot be loaded; the process should stop."""

    code = "summarizer_config_error"


__all__ = [
    "CanceledError",
    "InvalidDocumentError",
    "InvalidParamsError",
    "OutOfMemoryError",
    "SummarizationFailedError",
    "SummarizerConfigError",
    "SummarizerError",
    "SummarizerUnavailableError",
]
