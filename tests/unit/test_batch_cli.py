"""`condense batch`: what a person reads (status summary, hints on refusals)."""

from __future__ import annotations

import httpx
import pytest

from condense.batch_cli import _fail, describe_batch, failure_hint
from condense.client import AuthenticationError, error_from_response


def batch(**counts: int) -> dict[str, object]:
    values = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0, **counts}
    values["total"] = sum(values.values())
    return {
        "id": "b_0123456789",
        "status": "in_progress",
        "counts": values,
        "created_at": "2026-01-02T03:04:05Z",
        "finished_at": None,
        "metadata": {},
    }


def test_status_reads_as_a_summary_with_a_progress_bar() -> None:
    text = describe_batch(batch(queued=9, running=3, succeeded=12, failed=1))

    lines = text.splitlines()
    assert lines[0] == "batch     b_0123456789"
    assert lines[1] == "status    in progress"
    # 13 of 25 ended: 52%, so 16 of the 30 cells are filled.
    assert lines[2] == f"progress  [{'#' * 16}{'.' * 14}] 52%  13 of 25 documents done"
    assert "12 succeeded, 1 failed, 0 canceled, 3 running, 9 queued" in lines[3]
    assert "created   2026-01-02T03:04:05Z" in lines
    assert not any(line.startswith("finished") for line in lines)


def test_a_finished_batch_shows_when_and_its_metadata() -> None:
    done = batch(succeeded=4) | {
        "status": "completed",
        "finished_at": "2026-01-02T03:05:00Z",
        "metadata": {"ref": "x-1"},
    }

    text = describe_batch(done)

    assert "100%  4 of 4 documents done" in text
    assert "finished  2026-01-02T03:05:00Z" in text
    assert 'metadata  {"ref": "x-1"}' in text


def test_an_empty_batch_is_complete_not_a_division_by_zero() -> None:
    assert "100%  0 of 0 documents done" in describe_batch(batch())


def test_a_401_without_a_key_says_how_to_pass_one(capsys: pytest.CaptureFixture[str]) -> None:
    response = httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no valid API key"}})

    error = error_from_response(response)
    assert isinstance(error, AuthenticationError)
    assert (error.code, error.status) == ("unauthorized", 401)

    assert _fail(error, None) == 1

    err = capsys.readouterr().err
    assert err.startswith("condense: unauthorized: no valid API key\n")
    assert "--api-key" in err and "CONDENSE_API_KEY" in err and "condense keys create" in err


def test_hints_name_the_likely_cause() -> None:
    refused = failure_hint(401, "cnd_x")
    assert refused is not None and "refused this API key" in refused
    # A batch uploaded in open mode belongs to the tenant 'default'.
    other_tenant = failure_hint(404, "cnd_x")
    assert other_tenant is not None and "--tenant default" in other_tenant
    assert failure_hint(404, None) is None
    assert failure_hint(500, None) is None
