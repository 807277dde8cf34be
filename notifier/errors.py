"""Errors of the notifier, one flat tree: whether a later attempt may succeed is ``retryable``."""

from __future__ import annotations

from common.errors import CondenseError


class NotifierError(CondenseError):
    """Base of the notifier's own errors.

    A failed attempt carries what the delivery log records: the receiver's status code, if it
    answered, and how long the attempt took. Not retryable unless a subclass or the raiser
    says so: an error nobody classified disables the delivery, which can be replayed, rather
    than retrying it on the whole schedule.
    """

    code = "notifier_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        status_code: int | None = None,
        latency_ms: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.status_code = status_code
        self.latency_ms = latency_ms


class DeliveryFailedError(NotifierError):
    """This attempt failed but a later one may succeed (network error, 5xx, SMTP hiccup)."""

    code = "delivery_failed"
    retryable = True


class DeliveryImpossibleError(NotifierError):
    """No later attempt can succeed (the destination is unusable); the delivery is disabled."""

    code = "delivery_impossible"


class DestinationGoneError(NotifierError):
    """The receiver answered 410 Gone: it wants no more deliveries."""

    code = "destination_gone"


class MissingSecretError(NotifierError):
    """A webhook without a secret of its own while no default secret is configured."""

    code = "missing_webhook_secret"


class InvalidSecretError(NotifierError):
    """A secret that is not of the form whsec_<base64>."""

    code = "invalid_webhook_secret"


class SignatureError(NotifierError):
    """A webhook signature did not verify (missing headers, stale timestamp, no matching signature)."""

    code = "invalid_signature"
