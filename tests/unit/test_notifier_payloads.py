"""Payload building: the envelope, the job object, long summaries, the batch object, email."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from notifier import email, payloads
from schema.settings import NotifierSettings
from schema.store.batches import new_batch
from schema.store.records import BatchCounts, JobRecord
from tests.builders import job_values

CREATED = datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


def job_row(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": "0190a1b2-0000-7000-8000-000000000001",
        "status": "succeeded",
        "route": "async",
        "created_at": CREATED,
        "started_at": CREATED,
        "finished_at": CREATED,
        "summary": "Short.",
        "progress_done": 2,
        "progress_total": 2,
        "model": {"name": "minilm"},
        "params": {"max_words": 40},
        "metadata": {"ref": "a"},
        "custom_id": "doc-7",
        "attempts": 1,
        "webhook_secret": "whsec_must_never_leak",
        "input_text": "the whole document",
    }
    values.update(changes)
    return JobRecord(**job_values(**values))


def test_job_data_is_the_public_job_object() -> None:
    data = payloads.job_data(NotifierSettings(), job_row())
    assert data["id"] == "0190a1b2-0000-7000-8000-000000000001"
    assert data["summary"] == "Short."
    assert data["summary_url"] is None
    assert data["progress"] == {"done": 2, "total": 2}
    assert data["metadata"] == {"ref": "a"}
    assert data["created_at"].startswith("2025-01-02T03:04:05.6")
    # Only the public view goes out: no secret, no input text.
    assert "webhook_secret" not in json.dumps(data)
    assert "the whole document" not in json.dumps(data)


def test_summary_over_the_limit_is_replaced_by_its_url() -> None:
    settings = NotifierSettings(max_inline_summary_bytes=10, public_base_url="https://api.example/")
    exactly = payloads.job_data(settings, job_row(summary="é" * 5))  # 10 bytes: still inline
    assert exactly["summary"] == "é" * 5
    over = payloads.job_data(settings, job_row(summary="é" * 6))
    assert over["summary"] is None
    assert over["summary_url"] == "https://api.example/v1/summaries/0190a1b2-0000-7000-8000-000000000001"


def test_envelope_and_encoding() -> None:
    envelope = payloads.envelope("summary.succeeded", CREATED, {"id": "j", "summary": "café"})
    assert envelope == {
        "type": "summary.succeeded",
        "timestamp": "2025-01-02T03:04:05.600000Z",
        "data": {"id": "j", "summary": "café"},
    }
    body = payloads.encode(envelope)
    assert json.loads(body) == envelope
    assert "café".encode() in body  # UTF-8, not \u escapes
    assert b": " not in body  # compact, the same bytes on every attempt


def test_batch_data() -> None:
    batch = new_batch(
        tenant="acme", total=3, id="b1", status="completed", metadata={"k": 1}, created_at=CREATED
    )
    data = payloads.batch_data(
        NotifierSettings(public_base_url="https://x.example"), batch, BatchCounts(succeeded=2, failed=1)
    )
    # Statuses no job ended in are left out, in name order.
    assert data["counts"] == {"failed": 1, "succeeded": 2}
    assert list(data["counts"]) == ["failed", "succeeded"]
    assert (data["id"], data["status"], data["total"]) == ("b1", "completed", 3)
    assert data["created_at"] == "2025-01-02T03:04:05.600000Z"
    assert data["url"] == "https://x.example/v1/batches/b1"
    assert data["finished_at"] is None
    assert data["metadata"] == {"k": 1}


def test_email_for_a_long_summary_shows_its_start_and_a_link() -> None:
    settings = NotifierSettings(max_inline_summary_bytes=20, public_base_url="https://x.example")
    row = job_row(summary="Paris is the capital of France. " * 10)
    message = email.build_message(
        settings,
        event_type="summary.succeeded",
        event_id="msg_1",
        recipient="ada@example.com",
        data=payloads.job_data(settings, row),
        full_summary=row.summary,
    )
    assert message["Subject"] == f"Summary ready: {row.id}"
    assert message["Message-ID"] == "<msg_1@condense>"
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    text = plain.get_content()
    assert "Paris is the capital" in text
    assert text.count("Paris") == 1
    assert f"https://x.example/v1/summaries/{row.id}" in text
    assert f"https://x.example/v1/summaries/{row.id}" in rich.get_content()


def test_email_for_a_failed_job_names_the_error() -> None:
    row = job_row(status="failed", summary=None, error_code="too_long", error_message="<b>too</b> long")
    message = email.build_message(
        NotifierSettings(),
        event_type="summary.failed",
        event_id="msg_2",
        recipient="ada@example.com",
        data=payloads.job_data(NotifierSettings(), row),
    )
    assert message["Subject"].startswith("Summary failed: ")
    html_part = message.get_body(("html",))
    assert html_part is not None
    assert "&lt;b&gt;too&lt;/b&gt; long" in html_part.get_content()
