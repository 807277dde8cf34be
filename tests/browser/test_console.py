"""The console end to end: a user signs in, summarizes, uploads batches, follows them, downloads
their results, browses jobs and sets the webhook endpoint, against gateway + relay + worker.

The tests run in file order on one stack: the first runs it open (no key exists yet), the rest sign
in with a key created after it. The event streams may be absent on this server; the console then
polls, and the tests pass either way.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine

from gateway.auth import create_key
from schema.db import sync_url
from tests.browser.conftest import Watched
from tests.fixtures.pipeline import Pipeline, expect_json, make_document
from tests.fixtures.receivers import WebhookReceiver, reference_secret

# Generous: the stack shares two cores with other work; a passing run takes a fraction of these.
UI_TIMEOUT_MS = 90_000


def zip_of(documents: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in documents.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def api(stack: Pipeline, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    stack.client.headers.update(headers)
    return stack.client


@pytest.fixture(scope="module")
def api_key(stack: Pipeline) -> str:
    """Creates the first key, which ends open mode for good, and waits until the gateway sees it."""
    engine = create_engine(sync_url(stack.stack.env["CONDENSE_DATABASE__URL"]))
    try:
        key = create_key(engine, "console-test").key
    finally:
        engine.dispose()
    deadline = time.monotonic() + 30
    while stack.client.get("/v1/summaries", headers={"Authorization": ""}).status_code != 401:
        assert time.monotonic() < deadline, "the gateway kept running open after a key was created"
        time.sleep(0.1)
    stack.client.headers["Authorization"] = f"Bearer {key}"
    return key


_DATA_TRANSFER = """([name, encoded, type]) => {
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type }));
    return transfer;
}"""


def drop_file(page: Any, name: str, data: bytes, mime: str) -> None:
    """Drops one file on the page's drop zone, as dragging it from a file manager does."""
    transfer = page.evaluate_handle(_DATA_TRANSFER, [name, base64.b64encode(data).decode(), mime])
    page.dispatch_event(".drop", "dragover", {"dataTransfer": transfer})
    page.dispatch_event(".drop", "drop", {"dataTransfer": transfer})


def sign_in(tab: Watched, key: str, route: str = "") -> None:
    tab.expect_status(401)  # the console first asks without a key, to detect open mode
    tab.goto(route)
    tab.page.get_by_label("API key").fill(key)
    tab.page.get_by_role("button", name="Sign in").click()
    tab.page.get_by_role("navigation", name="Pages").wait_for()


def test_open_mode_needs_no_key_and_summarizes_at_once(open_page: Watched, stack: Pipeline) -> None:
    page = open_page.page
    open_page.goto("")
    page.get_by_text("Open mode (no API key needed)").wait_for()
    assert page.get_by_role("button", name="Sign out").is_hidden()
    document = make_document(1, sentences=8)
    page.get_by_label("Text", exact=True).fill(document)
    # A parameter the model refuses: the API's 422 message is shown, not a blank state.
    open_page.expect_status(422)
    page.get_by_label("Max words").fill("99999")
    page.get_by_role("button", name="Summarize").click()
    refusal = page.locator("form p.error")
    refusal.wait_for()
    assert "max_words" in refusal.inner_text()
    page.get_by_label("Max words").fill("")
    page.get_by_label("Max sentences").fill("2")
    page.get_by_label("Mode").select_option("sync")
    page.get_by_role("button", name="Summarize").click()
    summary = page.locator("blockquote.summary")
    summary.wait_for(timeout=UI_TIMEOUT_MS)
    text = summary.inner_text()
    sentences = [s for s in text.split(". ") if s]
    assert 1 <= len(sentences) <= 2
    assert sentences[0].rstrip(".") in document
    assert "succeeded" in page.locator("section.result").inner_text()
    open_page.shoot("summarize")


PARSE_CHUNKS = """async (chunks) => {
    const api = await import("/console/api.js");
    const encoder = new TextEncoder();
    const body = new ReadableStream({
        start(controller) {
            for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
            controller.close();
        },
    });
    const seen = [];
    await api.readEvents(body, (type, data, id) => seen.push([type, data, id]));
    return seen;
}"""

FOLLOW = """async (path) => {
    const api = await import("/console/api.js");
    const seen = [];
    await api.follow({
        stream: path,
        poll: async () => { seen.push(["polled"]); return { status: "succeeded", progress: { done: 2 } }; },
        isFinal: (json) => json.status === "succeeded",
        onUpdate: (json) => seen.push(["update", json.status, json.progress.done]),
        onDocument: (job) => seen.push(["document", job.custom_id]),
        onError: (error) => seen.push(["error", error.message]),
        signal: new AbortController().signal,
    });
    return seen;
}"""


def test_event_streams_are_parsed_and_followed_to_their_end(open_page: Watched, stack: Pipeline) -> None:
    """The streams' contract, checked in the browser: they may not be deployed on this server yet."""
    page = open_page.page
    open_page.expect_status(401)
    open_page.goto("")
    page.locator("#main").wait_for()
    # Split anywhere, CRLF or LF, comments, ids and multi-line data, as a proxy may deliver them.
    chunks = [": keep-alive\r\n\r\nid: 7\r\nevent: sta", 'tus\ndata: {"a":', "\ndata: 1}\n\n", "data: x\n\n"]
    assert page.evaluate(PARSE_CHUNKS, chunks) == [["status", '{"a":\n1}', "7"], ["message", "x", "7"]]

    def job(status: str, done: int) -> str:
        return json.dumps({"id": "j", "status": status, "progress": {"done": done, "total": 2}})

    events = (
        f": keep-alive\n\nid: 1\nevent: status\ndata: {job('running', 0)}\n\n"
        f"id: 2\nevent: progress\ndata: {job('running', 1)}\n\n"
        f'id: 3\nevent: document\ndata: {{"id": "d", "custom_id": "a.txt"}}\n\n'
        f"id: 4\nevent: end\ndata: {job('succeeded', 2)}\n\n"
    )
    page.route(
        "**/v1/fake/events",
        lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=events),
    )
    assert page.evaluate(FOLLOW, "/v1/fake/events") == [
        ["update", "running", 0],
        ["update", "running", 1],
        ["document", "a.txt"],
        ["update", "succeeded", 2],
    ]
    # A server without the stream answers 404: the console polls instead, and keeps doing so.
    open_page.expect_status(404)
    assert page.evaluate(FOLLOW, "/v1/no-such-stream/events") == [["polled"], ["update", "succeeded", 2]]


def test_sign_in_with_a_key_kept_in_session_storage_only(open_page: Watched, api_key: str) -> None:
    page = open_page.page
    open_page.expect_status(401)
    open_page.goto("")
    page.get_by_role("heading", name="Sign in").wait_for()
    open_page.shoot("sign-in")
    page.get_by_label("API key").fill("cnd_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That key was refused").wait_for()
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in with an API key").wait_for()
    assert page.evaluate("sessionStorage.getItem('condense.apiKey')") == api_key
    assert page.evaluate("localStorage.length") == 0
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("sessionStorage.getItem('condense.apiKey')") is None


def test_batch_upload_progress_results_and_downloads(
    open_page: Watched, stack: Pipeline, api_key: str, tmp_path: Path
) -> None:
    page = open_page.page
    sign_in(open_page, api_key, "#/batches")
    page.get_by_role("heading", name="Batches", exact=True).wait_for()
    files = page.get_by_label("Files", exact=True)

    # A file type the API does not take is flagged before anything is sent.
    files.set_input_files([{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}])
    page.get_by_text("unsupported file type (.exe)").wait_for()
    assert page.get_by_role("button", name="Upload").is_disabled()
    page.get_by_role("button", name="Remove tool.exe").click()

    # A bad document refuses the whole upload; the API's message is shown beside its file.
    open_page.expect_status(422)
    files.set_input_files(
        [
            {"name": "good.txt", "mimeType": "text/plain", "buffer": make_document(2, 5).encode()},
            {"name": "empty.txt", "mimeType": "text/plain", "buffer": b"   \n"},
        ]
    )
    page.get_by_role("button", name="Upload").click()
    page.get_by_text("Nothing was uploaded: empty.txt: document is empty").wait_for()
    assert page.locator("ul.files li.bad").inner_text().startswith("empty.txt")
    assert expect_json(stack.client.get("/v1/batches"))["data"] == []
    open_page.shoot("batches-refused")
    page.get_by_role("button", name="Clear").click()

    documents = {f"docs/{index:02d}.txt": make_document(100 + index, sentences=6) for index in range(20)}
    drop_file(page, "docs.zip", zip_of(documents), "application/zip")
    page.get_by_text("docs.zip").wait_for()
    page.get_by_label("Max sentences").fill("3")
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("heading", name="Batch", exact=True).wait_for()
    batch_id = page.url.rsplit("/", 1)[-1]
    page.get_by_text("100% (20/20)").wait_for(timeout=UI_TIMEOUT_MS)
    page.locator(".status").get_by_text("completed").wait_for()
    rows = page.locator("tbody tr[data-custom-id]")
    rows.nth(19).wait_for()
    assert rows.count() == 20
    open_page.shoot("batch")

    expected = [
        json.loads(line) for line in stack.client.get(f"/v1/batches/{batch_id}/results").text.splitlines()
    ]
    assert sorted(row["custom_id"] for row in expected) == sorted(documents)
    assert {row["status"] for row in expected} == {"succeeded"}
    shown = {row.get_attribute("data-custom-id") for row in rows.all()}
    assert shown == set(documents)

    with page.expect_download() as jsonl_download:
        page.get_by_role("button", name="Download JSONL").click()
    saved = tmp_path / "results.jsonl"
    jsonl_download.value.save_as(saved)
    assert jsonl_download.value.suggested_filename == f"batch-{batch_id}.jsonl"
    assert [json.loads(line) for line in saved.read_text().splitlines()] == expected

    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Download CSV").click()
    csv_download.value.save_as(tmp_path / "results.csv")
    table = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text(encoding="utf-8-sig"))))
    assert [(row["custom_id"], row["summary"]) for row in table] == [
        (r["custom_id"], r["summary"]) for r in expected
    ]

    # A result opens as its job: summary, timings and model.
    first = expected[0]
    page.locator(f'tr[data-custom-id="{first["custom_id"]}"]').get_by_role("link").click()
    page.get_by_role("heading", name=f"Job {first['job_id']}").wait_for()
    expect(page.locator("blockquote.summary")).to_have_text(first["summary"])
    details = page.locator("dl.details").inner_text()
    assert "Ran for" in details and " s" in details
    assert "backend: onnx" in details
    open_page.shoot("job")

    page.get_by_role("link", name="Batches").click()
    page.get_by_role("heading", name="Recent batches").wait_for()
    page.get_by_role("link", name=batch_id).wait_for()
    open_page.shoot("batches")


def test_jobs_list_filters_by_status_and_pages(open_page: Watched, stack: Pipeline, api_key: str) -> None:
    page = open_page.page
    # Beside the batch's 20 documents, enough to need a second page of 20.
    for seed in range(3):
        assert stack.submit(make_document(300 + seed, sentences=5), mode="sync")["status"] == "succeeded"
    sign_in(open_page, api_key, "#/jobs")
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_text("Page 1").wait_for()
    first_page = page.locator("tbody tr")
    assert first_page.count() == 20
    assert first_page.locator(".badge").all_inner_texts() == ["succeeded"] * 20
    open_page.shoot("jobs")
    page.get_by_role("button", name="Next page").click()
    page.get_by_text("Page 2").wait_for()
    total = len(expect_json(stack.client.get("/v1/summaries?status=succeeded&limit=100"))["data"])
    assert page.locator("tbody tr").count() == total - 20
    page.get_by_role("button", name="Previous page").click()
    page.get_by_text("Page 1").wait_for()
    page.get_by_label("Status").select_option("failed")
    page.get_by_text("No failed jobs.").wait_for()


def test_webhook_endpoint_set_rotated_used_and_removed(
    open_page: Watched, stack: Pipeline, api_key: str, webhook_receiver: WebhookReceiver
) -> None:
    page = open_page.page
    open_page.expect_status(404, 409, 422)  # no endpoint yet; a pending delivery; a refused URL
    sign_in(open_page, api_key, "#/settings")
    page.get_by_text("No default webhook endpoint is set.").wait_for()

    page.get_by_label("Webhook URL").fill("ftp://example.com/hook")
    page.get_by_role("button", name="Save endpoint").click()
    page.locator("form p.error").wait_for()
    assert page.locator("form p.error").inner_text().strip()

    secret = reference_secret()
    page.get_by_label("Webhook URL").fill(webhook_receiver.url)
    page.get_by_label("Signing secret (optional)").fill(secret)
    page.get_by_role("button", name="Save endpoint").click()
    page.get_by_text("Endpoint saved.").wait_for()
    endpoint = expect_json(stack.client.get("/v1/webhook-endpoint"))
    assert endpoint["url"] == webhook_receiver.url
    assert endpoint["secret"] == secret
    assert page.locator("code.secret").inner_text() == secret

    page.get_by_role("button", name="Rotate secret").click()
    page.get_by_text("Secret rotated").wait_for()
    rotated = expect_json(stack.client.get("/v1/webhook-endpoint"))["secret"]
    assert rotated != secret and rotated.startswith("whsec_")
    assert page.locator("code.secret").inner_text() == rotated
    open_page.shoot("settings")

    # A test event goes through the notifier to the receiver, signed with the rotated secret.
    webhook_receiver.secrets = [rotated]
    page.get_by_role("button", name="Send test event").click()
    page.get_by_text("Test event delivered: HTTP 200").wait_for(timeout=UI_TIMEOUT_MS)
    [received] = [r for r in webhook_receiver.requests if json.loads(r.body)["type"] == "webhook.test"]
    assert received.verified, received.verify_error

    # A job submitted now notifies the endpoint: its delivery log lists it, with a redeliver button.
    page.get_by_role("link", name="Summarize").click()
    page.get_by_label("Text", exact=True).fill(make_document(3, sentences=6))
    page.get_by_label("Mode").select_option("sync")
    page.get_by_role("button", name="Summarize").click()
    page.locator("blockquote.summary").wait_for(timeout=UI_TIMEOUT_MS)
    page.locator("section.result").get_by_role("link").click()
    delivery = page.locator("section.card", has_text="Deliveries").locator("tbody tr")
    delivery.first.wait_for()
    assert "job.succeeded" in delivery.first.inner_text() or "webhook" in delivery.first.inner_text()
    assert webhook_receiver.url in delivery.first.inner_text()
    delivery.first.get_by_role("button").click()
    # Only an exhausted or disabled delivery is sent again: the API says so, and the console shows it.
    page.locator("#banner").get_by_text("only exhausted or disabled deliveries").wait_for()

    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Remove endpoint").click()
    page.get_by_text("Endpoint removed.").wait_for()
    page.get_by_text("No default webhook endpoint is set.").wait_for()
    assert stack.client.get("/v1/webhook-endpoint").status_code == 404


@pytest.fixture
def stopped_worker(stack: Pipeline) -> Iterator[None]:
    """No worker runs, so a new batch stays queued until it is canceled."""
    stack.stack.child("worker-0").stop()
    yield


def test_cancel_a_running_batch(
    open_page: Watched, stack: Pipeline, api_key: str, stopped_worker: None, tmp_path: Path
) -> None:
    page = open_page.page
    sign_in(open_page, api_key, "#/batches")
    # A folder, as its picker gives it: each file keeps its path, which becomes its custom_id.
    folder = tmp_path / "more"
    folder.mkdir()
    for index in range(5):
        (folder / f"{index}.md").write_text(make_document(200 + index, sentences=10))
    page.get_by_label("A folder").set_input_files(folder)
    page.get_by_text("more/4.md").wait_for()
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("heading", name="Batch", exact=True).wait_for()
    batch_id = page.url.rsplit("/", 1)[-1]
    page.locator(".status").get_by_text("in progress").wait_for()
    page.get_by_role("button", name="Cancel batch").click()
    page.locator(".status").get_by_text("canceled").wait_for()
    # The counts line (and, once the batch ended, its status line) say it.
    page.get_by_text("5 canceled").first.wait_for()
    assert page.get_by_role("button", name="Cancel batch").is_hidden()
    rows = page.locator("tbody tr[data-custom-id]")
    rows.nth(4).wait_for()
    assert rows.locator(".badge").all_inner_texts() == ["canceled"] * 5
    assert {row.get_attribute("data-custom-id") for row in rows.all()} == {f"more/{i}.md" for i in range(5)}
    batch = expect_json(stack.client.get(f"/v1/batches/{batch_id}"))
    assert batch["status"] == "canceled" and batch["counts"]["canceled"] == 5
