"""The console's static pages and the API additions it uses, over the real app and SQLite."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

from fastapi.testclient import TestClient
from sqlalchemy import update

from gateway.console import STATIC_DIR
from notifier.dispatch import Dispatcher
from schema.db import make_engine
from schema.models import NotificationDelivery
from schema.settings import Settings
from tests.fixtures.gateway import assert_error
from tests.fixtures.receivers import WebhookReceiver

DOC = "Batches hold many documents. Each becomes a job. Results stream back as JSON lines."


def test_console_is_served_with_its_assets_and_a_strict_policy(client: TestClient) -> None:
    redirect = client.get("/console", follow_redirects=False)
    assert redirect.status_code in (307, 308)
    assert redirect.headers["location"].endswith("/console/")
    page = client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    # Every asset the page names is served from the package, and nothing comes from elsewhere.
    assets = re.findall(r'(?:href|src)="(/console/[^"]+)"', page.text)
    assert {"/console/app.js", "/console/style.css"} <= set(assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
    sources = "".join(
        path.read_text() for path in STATIC_DIR.iterdir() if path.suffix in {".js", ".html", ".css"}
    )
    assert not re.search(r"https?://(?!example\.com)", sources), (
        "the console must not load anything from outside"
    )
    assert (
        client.get("/console/app.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert client.get("/console/missing.js").status_code == 404
    # The console is no part of the API's description.
    assert not any(path.startswith("/console") for path in client.get("/openapi.json").json()["paths"])


def _canceled_batch(client: TestClient, names: list[str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, f"{DOC} {name}")
    batch = client.post("/v1/batches", files=[("files", ("docs.zip", buffer.getvalue()))]).json()
    assert client.post(f"/v1/batches/{batch['id']}/cancel").status_code == 200
    return str(batch["id"])


def test_batch_results_as_csv_match_the_jsonl_rows(client: TestClient) -> None:
    names = ["a.txt", "=cmd.txt", 'ünï, "quoted".txt']
    batch_id = _canceled_batch(client, names)
    jsonl = [json.loads(line) for line in client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    response = client.get(f"/v1/batches/{batch_id}/results", params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="batch-{batch_id}.csv"' in response.headers["content-disposition"]
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "custom_id",
        "job_id",
        "status",
        "summary",
        "variant",
        "adapter",
        "error_code",
        "error_message",
    ]
    assert len(rows) == 1 + len(jsonl)
    for row, line in zip(rows[1:], jsonl, strict=True):
        # A value a spreadsheet would evaluate is defused with a leading quote.
        expected_id = "'" + line["custom_id"] if line["custom_id"].startswith("=") else line["custom_id"]
        assert row[:3] == [expected_id, line["job_id"], line["status"]]
        assert row[3] == (line["summary"] or "")
        assert row[4:6] == [line["variant"] or "", line["adapter"] or ""]
    assert sorted(row[0] for row in rows[1:]) == sorted(["a.txt", "'=cmd.txt", 'ünï, "quoted".txt'])


def test_batch_results_refuse_an_unknown_format(client: TestClient) -> None:
    batch_id = _canceled_batch(client, ["a.txt"])
    body = assert_error(client.get(f"/v1/batches/{batch_id}/results?format=xml"), 422, "invalid_request")
    assert "format" in body["error"]["message"]


def test_test_event_needs_a_default_endpoint(client: TestClient) -> None:
    assert_error(client.post("/v1/webhook-endpoint/test"), 404, "not_found")


def test_test_event_is_delivered_signed_and_logged(
    client: TestClient, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    saved = client.put(
        "/v1/webhook-endpoint", json={"url": webhook_receiver.url, "secret": webhook_receiver.secret}
    )
    assert saved.status_code == 200, saved.text
    queued = client.post("/v1/webhook-endpoint/test")
    assert queued.status_code == 202, queued.text
    delivery = queued.json()
    assert delivery["event_type"] == "webhook.test"
    assert delivery["target"] == webhook_receiver.url
    assert delivery["status"] == "pending" and delivery["attempts"] == []
    assert "secret" not in delivery

    # The notifier sends it like any event: signed with the endpoint's secret, then logged.
    engine = make_engine(settings.database)
    try:
        assert Dispatcher(settings, engine).deliver_one(delivery["id"])
    finally:
        engine.dispose()
    [request] = webhook_receiver.requests
    assert request.verified, request.verify_error
    assert request.webhook_id == delivery["event_id"]
    assert request.payload["type"] == "webhook.test"
    assert request.payload["data"]["test"] is True

    logged = client.get(f"/v1/deliveries/{delivery['id']}")
    assert logged.status_code == 200, logged.text
    assert logged.json()["status"] == "succeeded"
    [attempt] = logged.json()["attempts"]
    assert attempt["succeeded"] and attempt["status_code"] == 200


def test_a_delivery_of_another_tenant_is_404(client: TestClient, settings: Settings) -> None:
    client.put("/v1/webhook-endpoint", json={"url": "http://127.0.0.1:9/hook"})
    delivery_id = client.post("/v1/webhook-endpoint/test").json()["id"]
    assert client.get(f"/v1/deliveries/{delivery_id}").status_code == 200
    engine = make_engine(settings.database)
    with engine.begin() as conn:
        conn.execute(update(NotificationDelivery).values(tenant="someone-else"))
    engine.dispose()
    assert_error(client.get(f"/v1/deliveries/{delivery_id}"), 404, "not_found")
