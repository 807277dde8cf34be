"""Every error that can reach an API client has exactly one HTTP status, from one table."""

from __future__ import annotations

import importlib

import pytest

from common.errors import CondenseError
from gateway.errors import STATUS_FOR_CODE, UnavailableError, status_for

# The packages whose errors a request handler can meet: its own, the store's, the engine's, and
# the URL policy. The worker's, notifier's and relay's never reach an HTTP answer.
CLIENT_FACING = ("gateway.", "schema.", "summarizer.", "common.")


def _subclasses(cls: type[CondenseError]) -> list[type[CondenseError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def client_facing_errors() -> list[type[CondenseError]]:
    for module in ("gateway.app", "schema.store.jobs", "schema.store.batches", "schema.store.deliveries"):
        importlib.import_module(module)
    return [cls for cls in _subclasses(CondenseError) if cls.__module__.startswith(CLIENT_FACING)]


@pytest.mark.parametrize("error", client_facing_errors(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_client_facing_code_has_a_status(error: type[CondenseError]) -> None:
    assert error.code in STATUS_FOR_CODE, f"{error.__name__}.code {error.code!r} has no HTTP status"


def test_statuses_follow_the_meaning_of_the_error() -> None:
    from schema.store.errors import IdempotencyConflictError, JobFinishedError, NotFoundError
    from summarizer.errors import InvalidParamsError, OutOfMemoryError

    assert status_for(NotFoundError("gone")) == 404
    assert status_for(JobFinishedError("done")) == 409
    assert status_for(IdempotencyConflictError("other body")) == 409
    assert status_for(InvalidParamsError("max_words: too big")) == 422
    assert status_for(OutOfMemoryError("later")) == 503
    assert status_for(UnavailableError("loading")) == 503


def test_an_unknown_code_is_a_server_error_never_a_client_one() -> None:
    assert status_for(CondenseError("surprise", code="not_in_the_table")) == 500
    assert status_for(CondenseError("surprise", code="not_in_the_table", retryable=True)) == 503
