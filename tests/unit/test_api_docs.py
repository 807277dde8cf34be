"""/docs and /redoc work offline, and the OpenAPI document matches what the API answers.

Every operation is called on the real app, for success and for errors, and each answer's status
and body are checked against the document the app serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from sqlalchemy import Engine

from condense.client import parse_events
from gateway.docs import ERRORS_BY_OPERATION, EXAMPLES
from schema.db import make_engine
from schema.models import DeliveryStatus, utcnow
from schema.settings import Settings
from schema.store import deliveries
from tests.fixtures.gateway import running_gateway

SHORT = "Docs must match answers. Every answer is checked. The schema is the contract."
LONG = " ".join(f"Sentence number {i} of a long document about queues and workers." for i in range(120))
UNKNOWN = "0190a000-0000-7000-8000-000000000000"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database)
    yield engine
    engine.dispose()


def test_docs_pages_reference_only_assets_served_here(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        html = response.text
        assert "http://" not in html and "https://" not in html, f"{page} loads something from elsewhere"
        references = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html)
        urls = {url for pair in references for url in pair if url}
        assert urls, f"{page} references nothing"
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
    assert (
        client.get("/docs/static/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )
    # The licences travel with the files.
    for licence in ("swagger-ui.LICENSE", "redoc.LICENSE", "redoc.standalone.js.LICENSE.txt"):
        assert client.get(f"/docs/static/{licence}").status_code == 200


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": document["components"]})


def test_the_document_declares_auth_error_bodies_and_examples(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    v1 = [(method, path, op) for method, path, op in _operations(document) if path.startswith("/v1/")]
    assert {(method, path) for method, path, _ in v1} == set(ERRORS_BY_OPERATION)
    for method, path, operation in v1:
        where = f"{method.upper()} {path}"
        assert operation["security"] == [{"bearerAuth": []}], where
        assert all(p["name"].lower() != "authorization" for p in operation.get("parameters", [])), where
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                media = response["content"]["application/json"]
                assert media["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, where
                _validator(document, media["schema"]).validate(media["example"])
            elif "content" in response:
                for name, media in response["content"].items():
                    assert "example" in media, f"{where} {status} {name} has no example"
                    if name == "application/json":
                        _validator(document, media["schema"]).validate(media["example"])
        if "requestBody" in operation:
            for name, media in operation["requestBody"]["content"].items():
                assert "example" in media, f"{where} request {name} has no example"
                if name == "application/json":
                    _validator(document, media["schema"]).validate(media["example"])
    assert set(EXAMPLES) <= set(ERRORS_BY_OPERATION)


class Checker:
    """Calls operations by their documented path and checks each answer against the document."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.document: dict[str, Any] = client.get("/openapi.json").json()
        self.seen: dict[tuple[str, str], set[int]] = {}

    def __call__(
        self, method: str, template: str, expected: int, *, path: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        url = template.format(**(path or {}))
        response = self.client.request(method.upper(), url, **kwargs)
        where = f"{method.upper()} {url}"
        assert response.status_code == expected, f"{where}: {response.status_code} {response.text[:300]}"
        operation = self.document["paths"][template][method]
        declared = operation["responses"].get(str(response.status_code))
        assert declared is not None, f"{where} answered {response.status_code}, which its document omits"
        self.seen.setdefault((method, template), set()).add(response.status_code)
        if response.status_code == 204:
            assert response.content == b""
            return response
        media = response.headers["content-type"].split(";")[0]
        assert media in declared["content"], (
            f"{where} answered {media}, documented {list(declared['content'])}"
        )
        schema = declared["content"][media]["schema"]
        if media == "application/json":
            _validator(self.document, schema).validate(response.json())
        if media == "text/event-stream":
            events = list(parse_events(response.text.splitlines()))
            assert events, where
            for event in events:
                _validator(self.document, schema).validate(
                    {"event": event.event, "id": event.id, "data": event.data}
                )
                json.loads(event.data)
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
        return response


def test_every_operation_answers_as_documented(client: TestClient, engine: Engine) -> None:
    call = Checker(client)

    # summaries
    sync = call(
        "post",
        "/v1/summaries",
        200,
        json={"text": SHORT, "webhook": {"url": "http://127.0.0.1:9/h", "secret": SECRET}},
    ).json()
    queued = call("post", "/v1/summaries", 202, json={"text": LONG, "mode": "async"}).json()
    call("post", "/v1/summaries", 400, content=b"{nope", headers={"content-type": "application/json"})
    call("post", "/v1/summaries", 422, json={"text": SHORT, "params": {"max_words": -1}})
    call("post", "/v1/summaries", 413, json={"text": "word " * 20_000})
    call("post", "/v1/summaries", 413, json={"text": LONG, "mode": "sync"})
    call(
        "post", "/v1/summaries", 202, json={"text": LONG, "mode": "async"}, headers={"Idempotency-Key": "k1"}
    )
    call(
        "post", "/v1/summaries", 409, json={"text": SHORT, "mode": "async"}, headers={"Idempotency-Key": "k1"}
    )
    call("get", "/v1/summaries", 200, params={"status": "queued", "limit": 2})
    call("get", "/v1/summaries", 422, params={"limit": 0})
    call("get", "/v1/summaries/{job_id}", 200, path={"job_id": sync["id"]})
    call("get", "/v1/summaries/{job_id}", 404, path={"job_id": UNKNOWN})
    call("get", "/v1/summaries/{job_id}/events", 200, path={"job_id": sync["id"]})
    call("get", "/v1/summaries/{job_id}/events", 404, path={"job_id": UNKNOWN})
    call(
        "get",
        "/v1/summaries/{job_id}/events",
        422,
        path={"job_id": sync["id"]},
        headers={"Last-Event-ID": "x" * 300},
    )
    found = call("get", "/v1/summaries/{job_id}/deliveries", 200, path={"job_id": sync["id"]}).json()["data"]
    call("get", "/v1/summaries/{job_id}/deliveries", 404, path={"job_id": UNKNOWN})
    call("post", "/v1/summaries/{job_id}/cancel", 200, path={"job_id": queued["id"]})
    call("post", "/v1/summaries/{job_id}/cancel", 409, path={"job_id": queued["id"]})
    call("post", "/v1/summaries/{job_id}/cancel", 404, path={"job_id": UNKNOWN})

    # deliveries: a pending one cannot be sent again; an exhausted one can.
    assert len(found) == 1
    delivery_id = found[0]["id"]
    call("post", "/v1/deliveries/{delivery_id}/redeliver", 409, path={"delivery_id": delivery_id})
    with engine.begin() as conn:
        lease = utcnow() + timedelta(minutes=5)
        claimed = deliveries.claim(conn, delivery_id, utcnow() + timedelta(days=2), lease)
        assert claimed is not None
        deliveries.record_attempt(
            conn,
            claimed.delivery,
            lease,
            attempted_at=utcnow(),
            succeeded=False,
            status_code=500,
            latency_ms=3.0,
            error="HTTP 500",
            status=DeliveryStatus.EXHAUSTED,
            next_attempt_at=None,
        )
    call("get", "/v1/summaries/{job_id}/deliveries", 200, path={"job_id": sync["id"]})
    call("post", "/v1/deliveries/{delivery_id}/redeliver", 202, path={"delivery_id": delivery_id})
    call("post", "/v1/deliveries/{delivery_id}/redeliver", 404, path={"delivery_id": UNKNOWN})
    call("get", "/v1/deliveries/{delivery_id}", 200, path={"delivery_id": delivery_id})
    call("get", "/v1/deliveries/{delivery_id}", 404, path={"delivery_id": UNKNOWN})

    # batches
    upload = [("files", ("a.txt", SHORT.encode())), ("files", ("b.txt", SHORT.encode()))]
    batch = call("post", "/v1/batches", 202, files=upload, data={"metadata": '{"team": "docs"}'}).json()
    call("post", "/v1/batches", 422, files=[("files", ("a.exe", b"MZ"))])
    call("post", "/v1/batches", 400, content=b"not a form", headers={"content-type": "multipart/form-data"})
    call("post", "/v1/batches", 413, files=[("files", (f"{i}.txt", SHORT.encode())) for i in range(6)])
    call("get", "/v1/batches", 200)
    call("get", "/v1/batches", 422, params={"cursor": "!!"})
    call("get", "/v1/batches/{batch_id}", 200, path={"batch_id": batch["id"]})
    call("get", "/v1/batches/{batch_id}", 404, path={"batch_id": UNKNOWN})
    call("post", "/v1/batches/{batch_id}/cancel", 200, path={"batch_id": batch["id"]})
    call("post", "/v1/batches/{batch_id}/cancel", 409, path={"batch_id": batch["id"]})
    call("post", "/v1/batches/{batch_id}/cancel", 404, path={"batch_id": UNKNOWN})
    call("get", "/v1/batches/{batch_id}/results", 200, path={"batch_id": batch["id"]})
    call("get", "/v1/batches/{batch_id}/results", 404, path={"batch_id": UNKNOWN})
    call(
        "get", "/v1/batches/{batch_id}/results", 200, path={"batch_id": batch["id"]}, params={"format": "csv"}
    )
    call(
        "get", "/v1/batches/{batch_id}/results", 422, path={"batch_id": batch["id"]}, params={"format": "xml"}
    )
    events = call("get", "/v1/batches/{batch_id}/events", 200, path={"batch_id": batch["id"]})
    last = list(parse_events(events.text.splitlines()))[-1]
    assert (last.event, last.json()["status"]) == ("end", "canceled")
    call("get", "/v1/batches/{batch_id}/events", 404, path={"batch_id": UNKNOWN})
    call(
        "get",
        "/v1/batches/{batch_id}/events",
        422,
        path={"batch_id": batch["id"]},
        headers={"Last-Event-ID": "x" * 300},
    )

    # the default webhook endpoint
    call("get", "/v1/webhook-endpoint", 404)
    call("post", "/v1/webhook-endpoint/test", 404)
    call("delete", "/v1/webhook-endpoint", 404)
    call("put", "/v1/webhook-endpoint", 200, json={"url": "http://127.0.0.1:9/hook"})
    call("put", "/v1/webhook-endpoint", 422, json={"url": "http://127.0.0.1:9/hook", "secret": "plain"})
    call("put", "/v1/webhook-endpoint", 400, content=b"{", headers={"content-type": "application/json"})
    call("put", "/v1/webhook-endpoint", 413, json={"url": "http://127.0.0.1:9/" + "x" * 9_000_000})
    call("get", "/v1/webhook-endpoint", 200)
    call("post", "/v1/webhook-endpoint/test", 202)
    call("delete", "/v1/webhook-endpoint", 204)

    # the model variants and the cache purge: nothing a caller sends can make them fail (their
    # 401s are checked below)
    call("get", "/v1/models", 200)
    call("delete", "/v1/cache", 200)
    # usage
    call("get", "/v1/usage", 200, params={"from": "2026-01-01", "group_by": "day"})
    call("get", "/v1/usage", 422, params={"group_by": "week"})

    operations = set(ERRORS_BY_OPERATION)
    assert set(call.seen) == operations
    for operation, statuses in call.seen.items():
        assert any(status < 400 for status in statuses), f"{operation}: no success case"
        if ERRORS_BY_OPERATION[operation]:
            assert any(status >= 400 for status in statuses), f"{operation}: no error case"


def test_answers_without_a_key_are_documented_401s(settings: Settings, engine: Engine) -> None:
    from gateway.auth import create_key

    create_key(engine, "acme")
    with running_gateway(settings) as client:
        call = Checker(client)
        for method, template in sorted(ERRORS_BY_OPERATION):
            params = dict.fromkeys(re.findall(r"{(\w+)}", template), UNKNOWN)
            call(method, template, 401, path=params)
