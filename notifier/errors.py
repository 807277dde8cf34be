"""Errors of the notifier: a retryable branch (try the attempt again later) and a permanent one."""

from __future__ import annotations

from schema.errors import CondenseError, PermanentError, RetryableError


class NotifierError(CondenseError):
    """Base of the notifier's own errors.

    A failed attempt carries what the delivery log records: the receiver's status code, if it
    answered, and how long the attempt took.
    """

    code = "notifier_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        latency_ms: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.latency_ms = latency_ms


class NotifierRetryableError(NotifierError, RetryableError):
    """This attempt failed but a later one may succeed (network error, 5xx, SMTP hiccup)."""

    code = "delivery_failed"


class NotifierPermanentError(NotifierError, PermanentError):
    """No later attempt can succeed (the destination is unusable); the delivery is disabled."""

    code = "delivery_impossible"


class DestinationGoneError(NotifierPermanentError):
    """The receiver answered 410 Gone: it wants no more deliveries."""

    code = "destination_gone"


class MissingSecretError(NotifierPermanentError):
    """A webhook without a secret of its own while no default secret is configured."""

    code = "missing_webhook_secret"


class InvalidSecretError(NotifierPermanentError):
    """A secret that is not of the form whsec_<base64>."""

    code = "invalid_webhook_secret"


class SignatureError(NotifierPermanentError):
    """A webhook signature did not verify (missing headers, stale timestamp, no matching signature)."""

    code = "invalid_signature"
    http_status = 401
