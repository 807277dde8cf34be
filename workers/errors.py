"""Worker errors, under one base."""

from __future__ import annotations

from common.errors import CondenseError


class WorkerError(CondenseError):
    """Base of the worker's own errors."""

    code = "worker_error"


class StorageUnavailableError(WorkerError):
    """The database refused a batch's results; the batch comes back through Kafka."""

    code = "storage_unavailable"
    retryable = True


class ModelMismatchError(WorkerError):
    """The model's files differ from their manifest and ``worker.allow_model_mismatch`` is off."""

    code = "model_mismatch"
