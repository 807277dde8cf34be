"""Worker errors: a retryable and a permanent branch under one base."""

from __future__ import annotations

from schema.errors import CondenseError, PermanentError, RetryableError


class WorkerError(CondenseError):
    pass


class WorkerRetryableError(WorkerError, RetryableError):
    pass


class WorkerPermanentError(WorkerError, PermanentError):
    pass


class StorageUnavailable(WorkerRetryableError):
    code = "storage_unavailable"
