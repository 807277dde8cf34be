"""The error hierarchy every package builds on.

Each package derives one base class from :class:`CondenseError` and splits it into a retryable and
a permanent branch, so callers decide whether to retry by type, never by message.
"""

from __future__ import annotations


class CondenseError(Exception):
    """Base of every error condense raises on purpose.

    ``code`` is the stable, machine-readable identifier the API returns; ``http_status`` is what
    the gateway answers with when the error reaches a client.
    """

    code: str = "internal_error"
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class RetryableError(CondenseError):
    """The same work may succeed later (a broker or database hiccup, CUDA out of memory)."""

    retryable = True
    code = "temporarily_unavailable"
    http_status = 503


class PermanentError(CondenseError):
    """Retrying cannot help (a bad document, a bad parameter)."""

    retryable = False
    code = "invalid_request"
    http_status = 400


class ConfigError(PermanentError):
    """The settings file or environment is invalid; the program stops at start."""

    code = "config_error"
