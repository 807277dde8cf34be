"""The /v1 API over a real SQLite database, with the in-memory summarizer for speed."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.auth import Authenticator, create_key, revoke_key
from schema.db import make_engine
from schema.models import OutboxEntry, SummaryJob
from schema.settings import Settings
from summarizer.testing import FakeSummarizer
from tests.fixtures.clock import FakeClock
from tests.fixtures.gateway import assert_error, count_rows, make_settings, running_gateway

SHORT = "Kafka carries ids. The database keeps the text. Workers pull batches and store results."
LONG = " ".join(f"Sentence number {i} talks about queues, batches and summaries." for i in range(400))


def test_short_text_is_answered_at_once_and_stored(client: TestClient) -> None:
    response = client.post("/v1/summaries", json={"text": SHORT})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["route"] == "sync"
    assert job["summary"]
    assert job["language"] == "en"
    assert job["model"]["name"]
    again = client.get(f"/v1/summaries/{job['id']}")
    assert again.status_code == 200
    assert again.json()["summary"] == job["summary"]


def test_long_text_is_queued_with_an_outbox_record(client: TestClient, sqlite_url: str) -> None:
    response = client.post("/v1/summaries", json={"text": LONG, "metadata": {"ticket": 7}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["route"] == "async"
    assert job["metadata"] == {"ticket": 7}
    assert response.headers["location"] == f"/v1/summaries/{job['id']}"
    assert count_rows(sqlite_url, OutboxEntry) == 1


def test_modes_force_the_route(client: TestClient) -> None:
    forced_async = client.post("/v1/summaries", json={"text": SHORT, "mode": "async"})
    assert forced_async.status_code == 202
    assert forced_async.json()["route"] == "async"
    too_long_for_sync = client.post("/v1/summaries", json={"text": LONG, "mode": "sync"})
    body = assert_error(too_long_for_sync, 413, "payload_too_large")
    assert "async" in body["error"]["message"]


def test_idempotency_key_returns_the_same_job_or_409(client: TestClient, sqlite_url: str) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/summaries", json={"text": LONG}, headers=headers)
    second = client.post("/v1/summaries", json={"text": LONG}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert count_rows(sqlite_url, SummaryJob) == 1
    assert_error(
        client.post("/v1/summaries", json={"text": SHORT}, headers=headers), 409, "idempotency_conflict"
    )
    assert count_rows(sqlite_url, SummaryJob) == 1


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 422, "invalid_request"),
        ({"text": ""}, 422, "invalid_request"),
        ({"text": "   "}, 422, "invalid_request"),
        ({"text": SHORT, "colour": "blue"}, 422, "invalid_request"),
        ({"text": SHORT, "mode": "later"}, 422, "invalid_request"),
        ({"text": SHORT, "params": {"max_words": -3}}, 422, "invalid_params"),
        ({"text": SHORT, "params": {"temperature": 2}}, 422, "invalid_params"),
        ({"text": "x" * 60_000}, 413, "payload_too_large"),
        ({"text": SHORT, "email": "not-an-address"}, 422, "invalid_request"),
        ({"text": SHORT, "webhook": {"url": "ftp://example.org/hook", "secret": "whsec_MTIz"}}, 422, None),
        ({"text": SHORT, "webhook": {"url": "http://10.0.0.1/hook", "secret": "whsec_MTIz"}}, 422, None),
        ({"text": SHORT, "webhook": {"url": "https://example.org/hook", "secret": "plain"}}, 422, None),
        ({"text": SHORT, "webhook": {"url": "https://example.org/hook"}}, 422, "invalid_request"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_creates_nothing(
    client: TestClient, sqlite_url: str, payload: dict[str, Any], status: int, code: str | None
) -> None:
    response = client.post("/v1/summaries", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert count_rows(sqlite_url, SummaryJob) == 0
    assert count_rows(sqlite_url, OutboxEntry) == 0


def test_malformed_json_is_400(client: TestClient, sqlite_url: str) -> None:
    response = client.post(
        "/v1/summaries", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")
    assert count_rows(sqlite_url, SummaryJob) == 0


def test_unknown_job_and_unknown_route_are_404(client: TestClient) -> None:
    assert_error(client.get("/v1/summaries/does-not-exist"), 404, "not_found")
    assert_error(client.get("/v2/nothing"), 404, "not_found")


def test_list_is_newest_first_and_paginates(client: TestClient) -> None:
    ids = [client.post("/v1/summaries", json={"text": LONG + str(i)}).json()["id"] for i in range(5)]
    first = client.get("/v1/summaries", params={"limit": 2}).json()
    assert [job["id"] for job in first["data"]] == ids[::-1][:2]
    second = client.get("/v1/summaries", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [job["id"] for job in second["data"]] == ids[::-1][2:4]
    third = client.get("/v1/summaries", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [job["id"] for job in third["data"]] == ids[::-1][4:]
    assert third["next_cursor"] is None
    queued = client.get("/v1/summaries", params={"status": "succeeded"}).json()
    assert queued["data"] == []
    assert_error(client.get("/v1/summaries", params={"status": "sleeping"}), 422, "invalid_request")
    assert_error(client.get("/v1/summaries", params={"limit": 0}), 422, "invalid_request")


def test_cancel_queued_job_and_409_for_finished(client: TestClient) -> None:
    queued = client.post("/v1/summaries", json={"text": LONG}).json()
    canceled = client.post(f"/v1/summaries/{queued['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert_error(client.post(f"/v1/summaries/{queued['id']}/cancel"), 409, "job_finished")
    done = client.post("/v1/summaries", json={"text": SHORT}).json()
    assert_error(client.post(f"/v1/summaries/{done['id']}/cancel"), 409, "job_finished")


@pytest.fixture
def auth_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of the authenticator's caches, for gateways started after this fixture."""
    clock = FakeClock()
    monkeypatch.setattr("gateway.app.Authenticator", functools.partial(Authenticator, ttl_s=60, clock=clock))
    return clock


def test_keys_enforce_auth_and_isolate_tenants(settings: Settings, auth_clock: FakeClock) -> None:
    engine = make_engine(settings.database)
    with running_gateway(settings) as client:
        open_job = client.post("/v1/summaries", json={"text": SHORT})
        assert open_job.status_code == 200
        acme = create_key(engine, "acme")
        globex = create_key(engine, "globex")
        # Past the cached "no key exists", instead of sleeping through its TTL.
        auth_clock.advance(61)
        assert_error(client.post("/v1/summaries", json={"text": SHORT}), 401, "unauthorized")
        bad = {"Authorization": "Bearer cnd_not-a-key"}
        assert_error(client.get("/v1/summaries", headers=bad), 401, "unauthorized")
        as_acme = {"Authorization": f"Bearer {acme.key}"}
        as_globex = {"Authorization": f"Bearer {globex.key}"}
        job = client.post("/v1/summaries", json={"text": LONG}, headers=as_acme).json()
        assert client.get(f"/v1/summaries/{job['id']}", headers=as_acme).status_code == 200
        assert_error(client.get(f"/v1/summaries/{job['id']}", headers=as_globex), 404, "not_found")
        assert_error(client.post(f"/v1/summaries/{job['id']}/cancel", headers=as_globex), 404, "not_found")
        assert client.get("/v1/summaries", headers=as_globex).json()["data"] == []
        revoke_key(engine, globex.id)
        auth_clock.advance(61)
        assert_error(client.get("/v1/summaries", headers=as_globex), 401, "unauthorized")
    engine.dispose()


def test_revoking_every_key_closes_the_api_instead_of_opening_it(
    settings: Settings, auth_clock: FakeClock
) -> None:
    engine = make_engine(settings.database)
    only = create_key(engine, "acme")
    with running_gateway(settings) as client:
        as_acme = {"Authorization": f"Bearer {only.key}"}
        assert client.get("/v1/summaries", headers=as_acme).status_code == 200
        revoke_key(engine, only.id)
        auth_clock.advance(61)
        assert_error(client.get("/v1/summaries"), 401, "unauthorized")
        assert_error(client.post("/v1/summaries", json={"text": SHORT}), 401, "unauthorized")
        assert_error(client.get("/v1/summaries", headers=as_acme), 401, "unauthorized")
    # A restart does not reopen it either.
    with running_gateway(settings) as client:
        assert_error(client.get("/v1/summaries"), 401, "unauthorized")
    engine.dispose()


def test_off_loopback_there_is_no_open_mode(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, CONDENSE_GATEWAY__HOST="0.0.0.0")
    engine = make_engine(settings.database)
    revoke_key(engine, create_key(engine, "acme").id)
    with running_gateway(settings) as client:
        assert_error(client.get("/v1/summaries"), 401, "unauthorized")
    engine.dispose()


def test_gateway_refuses_to_start_off_loopback_without_keys(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, CONDENSE_GATEWAY__HOST="0.0.0.0")
    app = create_app(settings, summarizer_factory=lambda _settings: FakeSummarizer())
    with pytest.raises(Exception, match="API key"), TestClient(app):
        pass


def test_healthz_names_every_component(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["components"]["db"] == "ok"
    assert body["components"]["model"] == "ready"
    assert "broker" in body["components"]
