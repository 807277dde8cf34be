"""The one root of every error condense raises on purpose.

Each package derives its own base from :class:`CondenseError` (``GatewayError``, ``WorkerError``,
``SummarizerError`` ...) and names its errors ``*Error``. Whether to retry is the ``retryable``
flag, never the message; what an error means to an HTTP client is decided by the gateway alone,
from ``code`` (see ``gateway.errors.STATUS_FOR_CODE``).
"""

from __future__ import annotations


class CondenseError(Exception):
    """``code`` is the stable, machine-readable identifier; ``retryable`` says whether the same
    work may succeed later (a broker or database hiccup, an accelerator out of memory)."""

    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class ConfigError(CondenseError):
    """The settings file or environment is invalid; the program stops at start."""

    code = "config_error"
