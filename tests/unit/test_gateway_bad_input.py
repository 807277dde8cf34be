"""Bad input gets a clear 4xx in the common error shape, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from schema.models import Batch, OutboxEntry, SummaryJob
from tests.fixtures.gateway import assert_error, count_rows, make_settings, running_gateway

TEXT = "Kafka carries ids. The database keeps the text. Workers pull batches and store results."


@pytest.fixture
def small_client(sqlite_url: str) -> Iterator[TestClient]:
    settings = make_settings(
        sqlite_url,
        CONDENSE_GATEWAY__MAX_BODY_BYTES="100000",
        CONDENSE_GATEWAY__MAX_METADATA_BYTES="1000",
    )
    with running_gateway(settings) as client:
        yield client


def post_raw(client: TestClient, body: str | bytes, **headers: str | bytes) -> object:
    return client.post("/v1/summaries", content=body, headers={"content-type": "application/json", **headers})


def nothing_written(url: str) -> bool:
    return count_rows(url, SummaryJob) == 0 and count_rows(url, OutboxEntry) == 0


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('{"text": "NUL \\u0000 inside", "mode": "async"}', "text"),
        ('{"text": "lone \\ud800 surrogate", "mode": "async"}', "text"),
        ('{"text": "\\u0001\\u0002\\u0003", "mode": "async"}', "text"),
        ('{"text": "fine.", "mode": "async", "metadata": {"k": "\\u0000"}}', "metadata"),
        ('{"text": "fine.", "mode": "async", "metadata": {"\\ud83d": 1}}', "metadata"),
        ('{"text": "fine.", "mode": "async", "metadata": {"n": NaN}}', "metadata"),
        ('{"text": "fine.", "mode": "async", "metadata": {"n": Infinity}}', "metadata"),
        ('{"text": "fine.", "mode": "async", "params": {"x": "\\u0000"}}', "params"),
        ('{"text": "fine.", "mode": "async", "metadata": ' + '{"a": ' * 40 + "1" + "}" * 41, "metadata"),
        ('{"text": "fine.", "webhook": {"url": "https://x.example/\\u0000", "secret": "whsec_aGk="}}', "url"),
        ('{"text": "fine.", "webhook": {"url": "https://x.example/", "secret": "whsec_\\u0000"}}', "secret"),
    ],
)
def test_values_no_database_can_store_are_refused_before_writing(
    small_client: TestClient, sqlite_url: str, body: str, where: str
) -> None:
    answer = assert_error(post_raw(small_client, body), 422, "invalid_request")
    assert where in answer["error"]["message"]
    assert nothing_written(sqlite_url)


def test_json_nested_past_the_recursion_limit_is_a_400(small_client: TestClient, sqlite_url: str) -> None:
    body = '{"text": "fine.", "metadata": ' + '{"a": ' * 5_000 + "1" + "}" * 5_001
    response = post_raw(small_client, body)
    assert response.status_code in (400, 422), response.text
    assert set(response.json()) == {"error"}
    assert nothing_written(sqlite_url)


def test_metadata_over_its_limit_is_a_413(small_client: TestClient, sqlite_url: str) -> None:
    body = json.dumps({"text": TEXT, "mode": "async", "metadata": {"blob": "x" * 2_000}})
    assert_error(post_raw(small_client, body), 413, "payload_too_large")
    assert nothing_written(sqlite_url)


def test_a_body_over_the_limit_is_refused_from_its_length(small_client: TestClient, sqlite_url: str) -> None:
    body = json.dumps({"text": "word " * 40_000, "mode": "async"})
    assert len(body) > 100_000
    assert_error(post_raw(small_client, body), 413, "payload_too_large")
    assert nothing_written(sqlite_url)


def test_a_streamed_body_over_the_limit_is_refused(small_client: TestClient, sqlite_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(200):
            yield b"word " * 200  # 1 kB each, 200 kB in all, with no Content-Length
        yield b'"}'

    response = small_client.post(
        "/v1/summaries", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")
    assert nothing_written(sqlite_url)


@pytest.mark.parametrize("key", ["", " ", "caf\u00e9"])
def test_an_empty_or_odd_idempotency_key_is_refused(
    small_client: TestClient, sqlite_url: str, key: str
) -> None:
    response = small_client.post(
        "/v1/summaries",
        content=json.dumps({"text": TEXT, "mode": "async"}),
        headers={"content-type": "application/json", "Idempotency-Key": key.encode()},
    )
    assert_error(response, 422, "invalid_request")
    assert nothing_written(sqlite_url)


@pytest.mark.parametrize("cursor", ["%C3%A9%C3%A9", "junk", "bm90LWFuLWlk"])
def test_a_cursor_not_made_by_the_api_is_a_422(small_client: TestClient, cursor: str) -> None:
    for path in ("/v1/summaries", "/v1/batches"):
        assert_error(small_client.get(f"{path}?cursor={cursor}"), 422, "invalid_request")


def test_batch_form_fields_are_checked_like_json_bodies(small_client: TestClient, sqlite_url: str) -> None:
    files = {"files": ("a.txt", b"One sentence. Another one.", "text/plain")}
    response = small_client.post("/v1/batches", files=files, data={"metadata": '{"k": "\\u0000"}'})
    assert_error(response, 422, "invalid_request")
    response = small_client.post("/v1/batches", files=files, data={"params": '{"max_words": NaN}'})
    assert_error(response, 422, "invalid_request")
    assert count_rows(sqlite_url, Batch) == 0
    assert nothing_written(sqlite_url)


def test_the_openapi_document_lists_the_error_answers(small_client: TestClient) -> None:
    document = small_client.get("/openapi.json").json()
    # Each operation lists the errors it can answer, no more (gateway.docs).
    for path, method, statuses in (
        ("/v1/summaries", "post", {"400", "401", "409", "413", "422", "429", "500", "503", "504"}),
        ("/v1/batches", "post", {"400", "401", "413", "422", "429", "500", "503"}),
        ("/v1/summaries/{job_id}", "get", {"401", "404", "500", "503"}),
    ):
        responses = document["paths"][path][method]["responses"]
        assert {status for status in responses if int(status) >= 400} == statuses, path
        assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
