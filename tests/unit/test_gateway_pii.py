"""PII modes at the gateway: refuse, mask before storing, mask the summary (SQLite, fake engine)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from condense.cli import main
from gateway.auth import OPEN_TENANT
from schema.db import make_engine
from schema.models import OutboxEntry, SummaryJob
from tests.fixtures.gateway import assert_error, count_rows, make_settings, running_gateway

EMAIL = "jane.roe@example.com"
PHONE = "+49 30 901820"
PERSONAL = f"Jane Roe can be reached at {EMAIL} or {PHONE} about the outage. The queue recovered."
LONG = (
    PERSONAL + " " + " ".join(f"Sentence {i} talks about queues, batches and summaries." for i in range(400))
)


def stored_jobs(url: str) -> list[dict]:
    engine = make_engine(make_settings(url).database)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(SummaryJob.__table__))]
    engine.dispose()
    return rows


def test_reject_names_the_types_and_stores_nothing(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, CONDENSE_GOVERNANCE__PII__DEFAULT_MODE="reject")
    with running_gateway(settings) as client:
        body = assert_error(client.post("/v1/summaries", json={"text": LONG}), 422, "pii_detected")
        message = body["error"]["message"]
        assert "EMAIL" in message
        assert "PHONE" in message
        assert EMAIL not in message
        assert PHONE not in message
        assert count_rows(sqlite_url, SummaryJob) == 0
        assert count_rows(sqlite_url, OutboxEntry) == 0
        # A job may ask for less than its tenant's default.
        allowed = client.post("/v1/summaries", json={"text": LONG, "pii": "off"})
        assert allowed.status_code == 202, allowed.text
        assert allowed.json()["pii"] == "off"


def test_mask_stored_masks_before_the_row_is_written(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    with running_gateway(settings) as client:
        queued = client.post("/v1/summaries", json={"text": LONG, "pii": "mask_stored"})
        assert queued.status_code == 202, queued.text
        short = client.post("/v1/summaries", json={"text": PERSONAL, "pii": "mask_stored"})
        assert short.status_code == 200, short.text
        assert EMAIL not in short.text
        assert PHONE not in short.text
    rows = stored_jobs(sqlite_url)
    assert len(rows) == 2
    for row in rows:
        assert row["pii_mode"] == "mask_stored"
        assert EMAIL not in row["input_text"]
        assert PHONE not in row["input_text"]
        assert "<EMAIL_1>" in row["input_text"]
        assert "<PHONE_1>" in row["input_text"]
        assert EMAIL not in (row["summary"] or "")


def test_mask_summary_keeps_the_document_and_masks_the_answer(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, CONDENSE_GOVERNANCE__PII__DEFAULT_MODE="mask_summary")
    with running_gateway(settings) as client:
        answer = client.post("/v1/summaries", json={"text": PERSONAL})
        assert answer.status_code == 200, answer.text
        job = answer.json()
        assert job["pii"] == "mask_summary"
        assert EMAIL not in job["summary"]
        assert "<EMAIL_1>" in job["summary"]
    (row,) = stored_jobs(sqlite_url)
    assert EMAIL in row["input_text"]
    assert EMAIL not in row["summary"]


def test_an_unknown_mode_is_a_validation_error(client) -> None:  # type: ignore[no-untyped-def]
    assert_error(
        client.post("/v1/summaries", json={"text": PERSONAL, "pii": "scramble"}), 422, "invalid_request"
    )


def test_batch_uploads_follow_the_mode(sqlite_url: str) -> None:
    with running_gateway(make_settings(sqlite_url)) as client:
        files = [
            ("files", ("a.txt", PERSONAL.encode())),
            ("files", ("b.txt", b"Nothing personal here. At all.")),
        ]
        refused = client.post("/v1/batches", files=files, data={"pii": "reject"})
        body = assert_error(refused, 422, "pii_detected")
        assert body["error"]["message"].startswith("a.txt: ")
        assert count_rows(sqlite_url, SummaryJob) == 0
        assert_error(client.post("/v1/batches", files=files, data={"pii": "hide"}), 422, "invalid_request")
        masked = client.post("/v1/batches", files=files, data={"pii": "mask_stored"})
        assert masked.status_code == 202, masked.text
    rows = stored_jobs(sqlite_url)
    assert len(rows) == 2
    assert all(row["pii_mode"] == "mask_stored" and EMAIL not in row["input_text"] for row in rows)


def test_database_errors_never_carry_the_document(sqlite_url: str) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from schema.models import jobs_table
    from tests.builders import job_values

    engine = make_engine(make_settings(sqlite_url).database)
    row = job_values(input_text=PERSONAL)
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [row])
    try:
        with engine.begin() as conn:
            conn.execute(insert(jobs_table), [row])
    except IntegrityError as exc:
        assert EMAIL not in str(exc)
        assert "hidden" in str(exc)
    else:
        raise AssertionError("a duplicate id was accepted")
    finally:
        engine.dispose()


def test_a_tenant_mode_set_in_the_database_applies_to_submits(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONDENSE_DATABASE__URL", sqlite_url)
    settings = make_settings(sqlite_url, CONDENSE_GOVERNANCE__PII__DEFAULT_MODE="mask_summary")
    with running_gateway(settings) as client:
        tenant = client.post("/v1/summaries", json={"text": PERSONAL}).json()["pii"]
        assert tenant == "mask_summary"
    # The open gateway's tenant (no API keys): set its mode the way an operator would.
    assert main(["pii", "set", "--tenant", OPEN_TENANT, "reject"]) == 0
    assert main(["pii", "list"]) == 0
    assert f"{OPEN_TENANT}: reject (database)" in capsys.readouterr().out
    with running_gateway(settings) as client:
        assert_error(client.post("/v1/summaries", json={"text": PERSONAL}), 422, "pii_detected")
        assert client.post("/v1/summaries", json={"text": PERSONAL, "pii": "off"}).status_code == 200
    assert main(["pii", "clear", "--tenant", OPEN_TENANT]) == 0
    with running_gateway(settings) as client:
        assert client.post("/v1/summaries", json={"text": PERSONAL}).json()["pii"] == "mask_summary"
