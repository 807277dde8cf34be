"""POST /v1/batches and friends over a real SQLite database: all-or-nothing uploads."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from schema.db import make_engine
from schema.models import Batch, OutboxEntry, SummaryJob
from schema.settings import Settings
from tests.fixtures.gateway import assert_error, count_rows

DOC = "Batches hold many documents. Each becomes a job. Results stream back as JSON lines."


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_jsonl_batch_creates_one_bulk_job_per_line(client: TestClient, sqlite_url: str) -> None:
    lines = "\n".join(json.dumps({"custom_id": f"doc-{i}", "text": f"{DOC} Number {i}."}) for i in range(3))
    response = client.post(
        "/v1/batches",
        files=[("files", ("docs.jsonl", lines.encode()))],
        data={"params": json.dumps({"max_words": 20}), "metadata": json.dumps({"team": "search"})},
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["counts"] == {
        "total": 3,
        "queued": 3,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
    }
    assert batch["metadata"] == {"team": "search"}
    assert response.headers["location"] == f"/v1/batches/{batch['id']}"
    assert count_rows(sqlite_url, SummaryJob) == 3
    assert count_rows(sqlite_url, OutboxEntry) == 3
    listed = client.get("/v1/batches").json()
    assert [item["id"] for item in listed["data"]] == [batch["id"]]
    # Nothing has finished yet, so the results stream is empty.
    assert client.get(f"/v1/batches/{batch['id']}/results").text == ""


def test_cancel_batch_cancels_queued_documents_and_completes_it(client: TestClient) -> None:
    upload = zip_bytes({f"{i}.txt": f"{DOC} {i}".encode() for i in range(4)})
    batch = client.post("/v1/batches", files=[("files", ("docs.zip", upload))]).json()
    canceled = client.post(f"/v1/batches/{batch['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert body["status"] == "canceled"
    assert body["counts"]["canceled"] == 4
    results = [
        json.loads(line) for line in client.get(f"/v1/batches/{batch['id']}/results").text.splitlines()
    ]
    assert [result["custom_id"] for result in results] == ["0.txt", "1.txt", "2.txt", "3.txt"]
    assert {result["status"] for result in results} == {"canceled"}
    assert_error(client.post(f"/v1/batches/{batch['id']}/cancel"), 409, "batch_finished")


@pytest.mark.parametrize(
    ("files", "data", "status", "code", "named"),
    [
        ([("files", ("a.exe", b"MZ"))], {}, 422, "invalid_upload", "a.exe"),
        ([("files", ("bad.txt", b"\xff\xfe\xfa"))], {}, 422, "invalid_upload", "bad.txt"),
        (
            [("files", ("d.jsonl", b'{"custom_id": "a", "text": "x"}\n{"custom_id": "a", "text": "y"}\n'))],
            {},
            422,
            "invalid_upload",
            "d.jsonl",
        ),
        (
            [("files", ("d.jsonl", b'{"custom_id": "a", "text": "x"}\n{oops\n'))],
            {},
            422,
            "invalid_upload",
            "line 2",
        ),
        ([("files", ("n.zip", zip_bytes({"inner.zip": b"PK"})))], {}, 422, "invalid_upload", "inner.zip"),
        ([("files", ("e.zip", zip_bytes({"../evil.txt": b"x"})))], {}, 422, "invalid_upload", "evil.txt"),
        (
            [("files", ("a.txt", DOC.encode()))],
            {"params": '{"max_words": 0}'},
            422,
            "invalid_params",
            "a.txt",
        ),
        ([("files", ("a.txt", DOC.encode()))], {"params": "{nope"}, 422, "invalid_request", "params"),
        ([("files", ("a.txt", DOC.encode()))], {"email": "nobody"}, 422, "invalid_request", "email"),
        (
            [("files", ("a.txt", DOC.encode()))],
            {"webhook_url": "http://169.254.169.254/x", "webhook_secret": "whsec_MTIz"},
            422,
            None,
            "",
        ),
        ([("files", (f"{i}.txt", DOC.encode())) for i in range(6)], {}, 413, "upload_too_large", ""),
    ],
)
def test_bad_uploads_are_refused_and_create_nothing(
    client: TestClient,
    sqlite_url: str,
    files: list[tuple[str, tuple[str, bytes]]],
    data: dict[str, str],
    status: int,
    code: str | None,
    named: str,
) -> None:
    response = client.post("/v1/batches", files=files, data=data)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code
    assert named in error["message"]
    assert count_rows(sqlite_url, Batch) == 0
    assert count_rows(sqlite_url, SummaryJob) == 0
    assert count_rows(sqlite_url, OutboxEntry) == 0


def test_batch_of_another_tenant_is_404(client: TestClient, settings: Settings, sqlite_url: str) -> None:
    batch = client.post("/v1/batches", files=[("files", ("a.txt", DOC.encode()))]).json()
    engine = make_engine(settings.database)
    with engine.begin() as conn:
        conn.execute(update(Batch).values(tenant="someone-else"))
    engine.dispose()
    assert_error(client.get(f"/v1/batches/{batch['id']}"), 404, "not_found")
    assert_error(client.get(f"/v1/batches/{batch['id']}/results"), 404, "not_found")
