"""A short, deterministic run of the API fuzzer (the long one is tests/chaos/test_fuzz.py):
a few schemathesis examples per operation, so a new 5xx or an answer the OpenAPI document does
not describe fails the regular suite too."""

from __future__ import annotations

import pytest

from tests.fixtures.fuzz import fuzz, fuzz_target


@pytest.mark.parametrize("keyed", [False, True], ids=["open", "api-keys"])
def test_a_few_examples_per_operation_give_no_server_error(sqlite_url: str, keyed: bool) -> None:
    with fuzz_target(sqlite_url, keyed=keyed) as target:
        problems = fuzz(target, max_examples=4, derandomize=True)
    assert not problems, "\n\n".join(problems)
