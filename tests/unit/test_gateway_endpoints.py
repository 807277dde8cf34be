"""A tenant's default webhook endpoint, used by jobs that name none."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from schema.db import make_engine
from schema.models import deliveries_table, jobs_table
from schema.settings import Settings
from tests.fixtures.gateway import assert_error

HOOK = "http://127.0.0.1:9/hook"
TEXT = "Default endpoints save repeating the hook. Every job uses it. Unless it names its own."


def stored(settings: Settings, table: object, **where: str) -> list[dict[str, object]]:
    engine = make_engine(settings.database)
    query = select(table)  # type: ignore[call-overload]
    for column, value in where.items():
        query = query.where(getattr(table.c, column) == value)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    engine.dispose()
    return rows


def test_jobs_without_a_webhook_use_the_tenant_endpoint(client: TestClient, settings: Settings) -> None:
    created = client.put("/v1/webhook-endpoint", json={"url": HOOK})
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert client.get("/v1/webhook-endpoint").json()["secret"] == secret

    job = client.post("/v1/summaries", json={"text": TEXT}).json()
    row = stored(settings, jobs_table, id=job["id"])[0]
    assert (row["webhook_url"], row["webhook_secret"]) == (HOOK, secret)
    # A sync job is final at once, so its event is already on record for the notifier.
    events = stored(settings, deliveries_table, job_id=job["id"])
    assert [(event["event_type"], event["target"]) for event in events] == [("summary.succeeded", HOOK)]

    own = client.post("/v1/summaries", json={"text": TEXT, "webhook": {"url": "http://127.0.0.1:10/other"}})
    assert own.status_code == 200, own.text
    row = stored(settings, jobs_table, id=own.json()["id"])[0]
    assert (row["webhook_url"], row["webhook_secret"]) == ("http://127.0.0.1:10/other", secret)


def test_endpoint_can_be_replaced_and_removed(client: TestClient) -> None:
    first = client.put("/v1/webhook-endpoint", json={"url": HOOK}).json()
    mine = "whsec_" + "A" * 40
    second = client.put("/v1/webhook-endpoint", json={"url": HOOK, "secret": mine}).json()
    assert second["secret"] == mine
    assert second["created_at"] == first["created_at"]
    assert client.delete("/v1/webhook-endpoint").status_code == 204
    assert_error(client.get("/v1/webhook-endpoint"), 404, "not_found")
    assert_error(client.delete("/v1/webhook-endpoint"), 404, "not_found")


def test_unsafe_or_malformed_endpoints_are_refused(client: TestClient) -> None:
    response = client.put("/v1/webhook-endpoint", json={"url": "http://10.0.0.1/hook"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_webhook_url"
    assert_error(
        client.put("/v1/webhook-endpoint", json={"url": HOOK, "secret": "plain"}), 422, "invalid_request"
    )
    assert_error(client.put("/v1/webhook-endpoint", json={"url": HOOK, "extra": 1}), 422, "invalid_request")
    assert_error(client.get("/v1/webhook-endpoint"), 404, "not_found")
