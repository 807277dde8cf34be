"""POST /v1/batches as a multipart stream: file counts up to batches.max_files, one spool, clear refusals."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import gateway.multipart
from schema.models import Batch, OutboxEntry, SummaryJob
from tests.fixtures.gateway import assert_error, count_rows, make_settings, running_gateway

DOC = b"Batches hold many documents. Each becomes a job."


def many_files(count: int, prefix: str = "doc") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"{prefix}{n}.txt", DOC + f" Number {n}.".encode(), "text/plain")) for n in range(count)
    ]


def test_far_more_than_a_thousand_files_are_one_batch(sqlite_url: str) -> None:
    # Starlette's form parser stops at 1,000 files by default; batches.max_files is the only limit.
    with running_gateway(make_settings(sqlite_url, CONDENSE_BATCHES__MAX_FILES="10000")) as client:
        response = client.post("/v1/batches", files=many_files(1_500))
    assert response.status_code == 202, response.text[:500]
    assert response.json()["counts"]["total"] == 1_500
    assert count_rows(sqlite_url, SummaryJob) == 1_500


@pytest.mark.parametrize("extra", [1, 2, 50])
def test_one_file_more_than_max_files_is_a_413(sqlite_url: str, extra: int) -> None:
    with running_gateway(make_settings(sqlite_url, CONDENSE_BATCHES__MAX_FILES="20")) as client:
        accepted = client.post("/v1/batches", files=many_files(20, "ok"))
        assert accepted.status_code == 202, accepted.text[:500]
        refused = client.post("/v1/batches", files=many_files(20 + extra))
    body = assert_error(refused, 413, "upload_too_large")
    assert "more than 20 documents" in body["error"]["message"]
    assert count_rows(sqlite_url, Batch) == 1
    assert count_rows(sqlite_url, SummaryJob) == 20


class SpoolSpy:
    """Records every spool the upload route creates, with the most it ever held in memory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spools: list[tempfile.SpooledTemporaryFile[bytes]] = []
        real = tempfile.SpooledTemporaryFile

        def spy(*args: object, **kwargs: object) -> tempfile.SpooledTemporaryFile[bytes]:
            spool: tempfile.SpooledTemporaryFile[bytes] = real(*args, **kwargs)  # type: ignore[call-overload]
            self.spools.append(spool)
            return spool

        monkeypatch.setattr(gateway.multipart.tempfile, "SpooledTemporaryFile", spy)


def test_every_file_of_an_upload_shares_one_spool(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SpoolSpy(monkeypatch)
    parts = [("files", (f"doc{n}.txt", (b"word " * 60_000) + b"end.", "text/plain")) for n in range(8)]
    settings = make_settings(sqlite_url, CONDENSE_BATCHES__MAX_FILES="10")
    with running_gateway(settings) as client:
        response = client.post("/v1/batches", files=parts)
    assert response.status_code == 202, response.text[:500]
    # Eight files of 300 kB each, 2.4 MB in all: one spool, past its memory part onto disk,
    # where eight per-file spools would each have stayed in memory.
    assert len(spy.spools) == 1
    assert spy.spools[0].closed
    assert count_rows(sqlite_url, SummaryJob) == 8


def test_the_key_is_checked_before_the_body_is_read(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.auth import create_key
    from schema.db import make_engine

    settings = make_settings(sqlite_url)
    engine = make_engine(settings.database)
    create_key(engine, "acme")
    engine.dispose()
    spy = SpoolSpy(monkeypatch)
    with running_gateway(settings) as client:
        refused = client.post("/v1/batches", files=many_files(2))
    assert_error(refused, 401, "unauthorized")
    assert spy.spools == []


def body_in_pieces(*pieces: bytes) -> Iterator[bytes]:
    yield from pieces


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/json", b'{"files": []}', 422, "invalid_request"),
        ("multipart/form-data", b"--x--\r\n", 400, "invalid_form"),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data\r\n\r\nhi\r\n--x--\r\n",
            400,
            "invalid_form",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\nhi',
            400,
            "invalid_form",
        ),
        ("multipart/form-data; boundary=x", b"--x--\r\n", 422, "invalid_request"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="other"\r\n\r\nhi\r\n--x--\r\n',
            422,
            "invalid_request",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="files"\r\n\r\nhi\r\n--x--\r\n',
            422,
            "invalid_request",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\n\r\nhi\r\n--x--\r\n',
            422,
            "invalid_request",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="files"; filename="caf\xe9.txt"\r\n\r\nhi\r\n--x--\r\n',
            422,
            "invalid_request",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\na@b.example\r\n--x\r\nContent-Disposition: form-data; name="email"\r\n\r\nc@d.example\r\n--x--\r\n',
            422,
            "invalid_request",
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="params"\r\n\r\n\xff\xfe\r\n--x--\r\n',
            422,
            "invalid_request",
        ),
    ],
    ids=[
        "not multipart",
        "no boundary",
        "part without a name",
        "cut off before the closing boundary",
        "no files",
        "unknown field",
        "files as a text field",
        "file under another name",
        "file name not UTF-8",
        "a field twice",
        "a field not UTF-8",
    ],
)
def test_a_malformed_form_is_refused_and_creates_nothing(
    client: TestClient, sqlite_url: str, content_type: str, body: bytes, status: int, code: str
) -> None:
    response = client.post("/v1/batches", content=body, headers={"content-type": content_type})
    assert_error(response, status, code)
    assert count_rows(sqlite_url, Batch) == 0
    assert count_rows(sqlite_url, OutboxEntry) == 0


def test_a_text_field_over_its_limit_is_a_413_while_it_streams(client: TestClient, sqlite_url: str) -> None:
    head = b'--x\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
    response = client.post(
        "/v1/batches",
        content=body_in_pieces(head, *(b"x" * 10_000 for _ in range(20)), b"\r\n--x--\r\n"),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert_error(response, 413, "payload_too_large")
    assert count_rows(sqlite_url, Batch) == 0
