"""A missing service skips a local run but fails a CI run, whichever fixture notices it."""

from __future__ import annotations

import pytest

from tests.fixtures.services import require_service


def outcome(name: str, reason: str) -> BaseException:
    # Caught by hand: under pytest.raises(Failed) a wrong skip would escape and pass as a skip.
    try:
        require_service(name, reason)
    except BaseException as exc:
        return exc
    raise AssertionError("require_service returned")


@pytest.mark.parametrize("value", ["true", "TRUE", " True "])
def test_on_ci_a_missing_service_fails_the_test(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)

    result = outcome("PostgreSQL", "127.0.0.1:5432 did not answer")

    assert type(result) is pytest.fail.Exception, repr(result)
    assert str(result) == "PostgreSQL is required and unavailable: 127.0.0.1:5432 did not answer"
    assert not result.pytrace


@pytest.mark.parametrize("value", [None, "", "false", "1"])
def test_elsewhere_a_missing_service_skips_the_test(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)

    result = outcome("the broker", "could not start")

    assert type(result) is pytest.skip.Exception, repr(result)
    assert str(result) == "the broker is required and unavailable: could not start"
