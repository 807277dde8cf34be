"""condense.client against a real gateway (uvicorn) over SQLite; the test plays the worker through
the job store, in a thread that acts once the client's event stream is open."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from condense.cli import main
from condense.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
    WaitTimeoutError,
)
from condense.stack import free_port
from gateway.auth import create_key
from schema.db import make_engine
from schema.models import JobStatus
from schema.settings import Settings
from schema.store import batches, jobs
from schema.store.jobs import Outcome
from tests.fixtures.gateway import live_gateway, make_settings

FAST = {
    "CONDENSE_GATEWAY__EVENTS_POLL_S": "0.02",
    "CONDENSE_GATEWAY__EVENTS_SETTLE_S": "0",
}
DOC = "A client waits on the stream. The worker ends the job. The answer arrives without polling."


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url, **FAST)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database)
    yield engine
    engine.dispose()


@pytest.fixture
def gateway(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    with live_gateway(settings) as served:
        yield served


def when_streams_open(app: FastAPI, count: int, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in a thread as soon as ``count`` event streams are open on ``app``."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while app.state.events.open < count:
            assert time.monotonic() < deadline, "no event stream opened"
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def finish_all(engine: Engine, job_ids: list[str], batch_id: str | None = None) -> None:
    for job_id in job_ids:
        # One transaction per document: the stream sees them end one by one.
        with engine.begin() as conn:
            jobs.claim(conn, [job_id], max_claims=3)
            jobs.finish(
                conn, job_id, Outcome(JobStatus.SUCCEEDED, summary=f"summary {job_id[-4:]}", chunks=1)
            )
            if batch_id is not None:
                batches.complete_if_done(conn, batch_id)


def batch_job_ids(engine: Engine, batch_id: str) -> list[str]:
    with engine.connect() as conn:
        found = jobs.list_page(conn, "default", status=None, before_id=None, limit=100)
    return sorted(job.id for job in found if job.batch_id == batch_id)


def test_wait_follows_the_event_stream(gateway: tuple[str, FastAPI], engine: Engine) -> None:
    base, app = gateway
    with Client(base) as client:
        job = client.submit(DOC, mode="async", max_words=5, metadata={"ref": "a-1"})
        assert (job.status, job.params["max_words"], job.metadata) == ("queued", 5, {"ref": "a-1"})
        worker = when_streams_open(app, 1, lambda: finish_all(engine, [job.id]))
        done = client.wait(job.id, timeout_s=20)
        worker.join()
        assert done.status == JobStatus.SUCCEEDED
        assert done.summary == f"summary {job.id[-4:]}"
        assert client.get(job.id) == done
        page = client.list(status="succeeded")
        assert [listed.id for listed in page.data] == [job.id]
        # A short text is answered at once on the sync path.
        assert client.submit(DOC).status == JobStatus.SUCCEEDED


def test_wait_polls_when_the_gateway_streams_no_more(sqlite_url: str, engine: Engine) -> None:
    settings = make_settings(sqlite_url, **{**FAST, "CONDENSE_GATEWAY__EVENTS_MAX_STREAMS": "1"})
    with live_gateway(settings) as (base, _app), Client(base, poll_s=0.02) as client:
        first = client.submit(DOC, mode="async")
        second = client.submit(DOC, mode="async")
        # The one stream allowed watches the first job; waiting on the second must poll.
        with pytest.raises(UnavailableError) as refused:
            stream = client.events(f"/v1/summaries/{first.id}/events")
            next(stream)
            next(client.events(f"/v1/summaries/{second.id}/events"))
        assert refused.value.retry_after_s == 3.0
        assert refused.value.code == "overloaded"
        worker = threading.Thread(target=finish_all, args=(engine, [second.id]))
        worker.start()
        assert client.wait(second.id, timeout_s=20).status == JobStatus.SUCCEEDED
        worker.join()
        stream.close()
        with pytest.raises(WaitTimeoutError):
            client.wait(first.id, timeout_s=0.2)


def test_upload_a_folder_and_iterate_results_as_they_arrive(
    gateway: tuple[str, FastAPI], engine: Engine, tmp_path: Path
) -> None:
    base, app = gateway
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(DOC)
    (folder / "sub" / "b.md").write_text("# B\n\n" + DOC)
    (folder / "ignored.bin").write_bytes(b"\0\1")
    with Client(base) as client:
        batch = client.upload_batch(folder, params={"max_words": 8}, metadata={"team": "docs"})
        assert (batch.counts.total, batch.metadata) == (2, {"team": "docs"})
        ids = batch_job_ids(engine, batch.id)
        worker = when_streams_open(app, 1, lambda: finish_all(engine, ids, batch.id))
        results = list(client.iter_results(batch.id))
        worker.join()
        assert [(result.custom_id, result.status) for result in results] == [
            ("a.txt", "succeeded"),
            ("sub/b.md", "succeeded"),
        ]
        assert [result.job_id for result in results] == ids
        assert client.get_batch(batch.id).status == "completed"
        events = list(client.batch_events(batch.id))
        assert [event.event for event in events] == ["status", "document", "document", "end"]
        resumed = list(client.batch_events(batch.id, last_event_id=events[1].id))
        assert [event.event for event in resumed] == ["document", "end"]
        # Once ended, the stream gives every result again at once; /results agrees with it.
        assert list(client.iter_results(batch.id)) == results
        assert [line["job_id"] for line in client.results(batch.id)] == ids


def test_the_async_client_has_the_same_methods(gateway: tuple[str, FastAPI], engine: Engine) -> None:
    base, app = gateway

    async def scenario() -> None:
        async with AsyncClient(base) as client:
            job = await client.submit(DOC, mode="async")
            worker = when_streams_open(app, 1, lambda: finish_all(engine, [job.id]))
            done = await client.wait(job.id, timeout_s=20)
            await asyncio.to_thread(worker.join)
            assert done.status == JobStatus.SUCCEEDED
            assert (await client.list()).data[0].id == job.id
            assert [event.event async for event in client.job_events(job.id)] == ["status", "end"]
            batch = await client.upload_batch([("one.txt", DOC.encode()), ("two.txt", DOC.encode())])
            ids = batch_job_ids(engine, batch.id)
            worker = when_streams_open(app, 1, lambda: finish_all(engine, ids, batch.id))
            results = [result async for result in client.iter_results(batch.id)]
            await asyncio.to_thread(worker.join)
            assert [result.custom_id for result in results] == ["one.txt", "two.txt"]
            with pytest.raises(NotFoundError):
                await client.get_batch(job.id)

    asyncio.run(scenario())


def test_errors_are_typed_by_family(gateway: tuple[str, FastAPI]) -> None:
    base, _app = gateway
    with Client(base) as client:
        with pytest.raises(NotFoundError) as missing:
            client.get("0190a000-0000-7000-8000-000000000000")
        assert (missing.value.code, missing.value.status) == ("not_found", 404)
        with pytest.raises(InvalidRequestError) as invalid:
            client.submit(DOC, max_words=-3)
        assert (invalid.value.status, invalid.value.code) == (422, "invalid_params")
        job = client.submit(DOC, mode="async")
        assert client.cancel(job.id).status == JobStatus.CANCELED
        with pytest.raises(ConflictError):
            client.cancel(job.id)
        with pytest.raises(NotFoundError):
            client.redeliver("0190a000-0000-7000-8000-000000000000")
        assert client.deliveries(job.id) == []
        endpoint = client.set_webhook_endpoint("http://127.0.0.1:9/hook")
        assert endpoint["secret"].startswith("whsec_")
        assert client.get_webhook_endpoint()["url"] == "http://127.0.0.1:9/hook"
        client.delete_webhook_endpoint()
        with pytest.raises(NotFoundError):
            client.get_webhook_endpoint()


def test_cli_status_table_and_the_key_hint(
    gateway: tuple[str, FastAPI], engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base, _app = gateway
    (tmp_path / "one.txt").write_text(DOC)
    assert main(["batch", "submit", str(tmp_path / "one.txt"), "--url", base]) == 0
    batch_id = capsys.readouterr().out.strip()
    assert main(["batch", "status", batch_id, "--url", base]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"batch     {batch_id}\nstatus    in progress\n")
    assert "0 of 1 documents done" in table
    assert main(["batch", "status", batch_id, "--url", base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == batch_id
    finish_all(engine, batch_job_ids(engine, batch_id), batch_id)
    out = tmp_path / "out.jsonl"
    assert main(["batch", "results", batch_id, "--url", base, "-o", str(out)]) == 0
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ["one.txt"]


def test_cli_and_client_tell_about_the_key_on_401(
    settings: Settings, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_key(engine, "default").key
    with live_gateway(settings) as (base, _app):
        some_id = "0190a000-0000-7000-8000-000000000000"
        assert main(["batch", "status", some_id, "--url", base]) == 1
        err = capsys.readouterr().err
        assert err.startswith("condense: unauthorized: ")
        assert "--api-key" in err and "CONDENSE_API_KEY" in err
        with Client(base) as client, pytest.raises(AuthenticationError) as refused:
            client.get_batch(some_id)
        assert refused.value.status == 401
        # With the key, the same question reaches the batch store (none there).
        assert main(["batch", "status", some_id, "--url", base, "--api-key", key]) == 1
        assert capsys.readouterr().err.startswith("condense: not_found: ")


def test_cli_says_when_no_gateway_answers(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["batch", "status", "0190a000-0000-7000-8000-000000000000", "--url", url]) == 1
    assert capsys.readouterr().err.startswith(f"condense: cannot reach the gateway at {url}: ")
