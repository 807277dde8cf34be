"""Errors of the job store: what a refused transition or a missing row means."""

from __future__ import annotations

from common.errors import CondenseError


class StoreError(CondenseError):
    """Base of the store's errors."""

    code = "store_error"


class NotFoundError(StoreError):
    """No such job, batch or delivery, or it belongs to another tenant (never told apart)."""

    code = "not_found"


class JobFinishedError(StoreError):
    """The transition needs an open job, and this one has ended."""

    code = "job_finished"


class BatchFinishedError(StoreError):
    code = "batch_finished"


class DeliveryNotReplayableError(StoreError):
    """Only a delivery that gave up (exhausted or disabled) can be sent again."""

    code = "delivery_not_replayable"


class IdempotencyConflictError(StoreError):
    """The Idempotency-Key was used before with a different request body."""

    code = "idempotency_conflict"


class CacheFrontUnavailableError(StoreError):
    """A purge could not reach the result cache's Redis front: copies of the entries may remain."""

    code = "temporarily_unavailable"
    retryable = True
