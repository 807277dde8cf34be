"""Errors of the summarization engine.

Every error is a :class:`SummarizerError`; its retryable or permanent branch also derives from the
matching branch of :mod:`schema.errors`, so callers that only know the schema classes still decide
correctly whether to retry.
"""

from __future__ import annotations

from schema.errors import CondenseError, PermanentError, RetryableError


class SummarizerError(CondenseError):
    """Base of every error the summarizer raises or returns as a batch entry."""

    code = "summarizer_error"


class SummarizerRetryableError(SummarizerError, RetryableError):
    """The same work may succeed later, possibly in a smaller batch."""

    code = "summarizer_unavailable"
    http_status = 503


class OutOfMemory(SummarizerRetryableError):
    """The accelerator ran out of memory; retry the documents in smaller batches.

    Raised (never returned as an entry) by ``summarize_batch``: the whole call failed, so the caller
    splits the batch and tries again.
    """

    code = "out_of_memory"


class SummarizerPermanentError(SummarizerError, PermanentError):
    """Retrying the same input cannot help."""

    code = "summarization_failed"
    http_status = 422


class InvalidParamsError(SummarizerPermanentError):
    """A summary parameter is unknown, belongs to the other model family, or is out of range."""

    code = "invalid_params"
    http_status = 422


class InvalidDocumentError(SummarizerPermanentError):
    """The document cannot be summarized (empty, not text, nothing but code or markup)."""

    code = "invalid_document"
    http_status = 422


class Canceled(SummarizerPermanentError):
    """``should_cancel`` asked to stop this document; the work done so far is discarded."""

    code = "canceled"
    http_status = 409


class SummarizerConfigError(SummarizerPermanentError):
    """The model setting points at something that cannot be loaded; the process should stop."""

    code = "summarizer_config_error"
    http_status = 500


__all__ = [
    "Canceled",
    "InvalidDocumentError",
    "InvalidParamsError",
    "OutOfMemory",
    "SummarizerConfigError",
    "SummarizerError",
    "SummarizerPermanentError",
    "SummarizerRetryableError",
]
