"""Fuzz the whole API from its OpenAPI document, on SQLite and PostgreSQL, with and without API keys.

Run by ``make chaos``, not ``make test``: a few minutes of schemathesis per database and auth
mode. The rule: no 5xx, every 503 with Retry-After, and every answer as the document describes it.
``CONDENSE_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 50). The regular
suite keeps a short, deterministic version in tests/unit/test_fuzz_smoke.py.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests.fixtures.fuzz import fuzz, fuzz_target

EXAMPLES = int(os.environ.get("CONDENSE_FUZZ_EXAMPLES", "50"))


@pytest.mark.parametrize("keyed", [False, True], ids=["open", "api-keys"])
def test_no_server_errors_and_answers_as_documented(db_url: str, keyed: bool) -> None:
    statuses: Counter[int] = Counter()
    with fuzz_target(db_url, keyed=keyed) as target:
        problems = fuzz(target, max_examples=EXAMPLES, statuses=statuses)
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    by_class = " ".join(f"{c}xx={sum(n for s, n in statuses.items() if s // 100 == c)}" for c in (2, 4, 5))
    database = db_url.split(":", 1)[0].split("+", 1)[0]
    # The drill's report line, wanted on success too (make chaos runs pytest -s).
    print(  # noqa: T201
        f"\nfuzz {database} {'api-keys' if keyed else 'open'}: requests={sum(statuses.values())} "
        f"{by_class} problems={len(problems)}",
        flush=True,
    )
    assert statuses, "the fuzzer sent nothing"
    assert server_errors == 0 or problems, "5xx answers that the checks did not report"
    assert not problems, "\n\n".join(problems)
