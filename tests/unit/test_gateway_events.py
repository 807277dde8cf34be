"""Event streams of jobs and batches over a real gateway (uvicorn) and a real SQLite database.

The test plays the worker through the job store, one step at a time, and reads each stream up to
the event that step must cause: every reader then sees every step, whatever the poll timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from condense.client import ServerEvent, SSEDecoder
from gateway.auth import create_key
from gateway.events import BatchPosition, JobPosition
from schema.db import make_engine
from schema.models import JobStatus, utcnow
from schema.settings import Settings
from schema.store import batches, jobs
from schema.store.jobs import Outcome
from tests.fixtures.gateway import assert_error, live_gateway, make_settings, running_gateway

FAST = {
    "CONDENSE_GATEWAY__EVENTS_POLL_S": "0.02",
    "CONDENSE_GATEWAY__EVENTS_HEARTBEAT_S": "60",
    "CONDENSE_GATEWAY__EVENTS_SETTLE_S": "0",
}
DOC = "Streams tell a client what changed. The rows are the truth. Ids say where a reader is."


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url, **FAST)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database)
    yield engine
    engine.dispose()


class Reader:
    """One open event stream, read event by event (comments kept, for the heartbeat test)."""

    def __init__(self, http: httpx.Client, path: str, last_event_id: str | None = None) -> None:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._context = http.stream("GET", path, headers=headers, timeout=10)
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()
        self._decoder = SSEDecoder()
        self.events: list[ServerEvent] = []
        self.comments: list[str] = []
        self.closed = False

    def next(self) -> ServerEvent:
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line)
            event = self._decoder.feed(line)
            if event is not None:
                self.events.append(event)
                return event
        self.closed = True
        raise AssertionError(f"the stream closed after {[e.event for e in self.events]}")

    def until(self, name: str) -> list[ServerEvent]:
        """Events up to and including the next one called ``name``."""
        start = len(self.events)
        while self.next().event != name:
            pass
        return self.events[start:]

    def rest(self) -> list[ServerEvent]:
        start = len(self.events)
        try:
            while True:
                self.next()
        except AssertionError:
            pass
        return self.events[start:]

    def close(self) -> None:
        self._context.__exit__(None, None, None)


@contextmanager
def reading(http: httpx.Client, path: str, last_event_id: str | None = None) -> Iterator[Reader]:
    reader = Reader(http, path, last_event_id)
    try:
        yield reader
    finally:
        reader.close()


def upload(http: httpx.Client, count: int) -> dict[str, Any]:
    lines = "\n".join(
        json.dumps({"custom_id": f"doc-{i}", "text": f"{DOC} Number {i}."}) for i in range(count)
    )
    response = http.post("/v1/batches", files=[("files", ("docs.jsonl", lines.encode()))])
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    return batch


def document_ids(engine: Engine, batch_id: str) -> list[str]:
    """The batch's jobs in upload order (ids grow with time)."""
    with engine.connect() as conn:
        found = jobs.list_page(conn, "default", status=None, before_id=None, limit=100)
    return sorted(job.id for job in found if job.batch_id == batch_id)


def claim(engine: Engine, ids: list[str]) -> None:
    with engine.begin() as conn:
        assert len(jobs.claim(conn, ids, max_claims=3).running) == len(ids)


def finish(engine: Engine, ids: list[str], batch_id: str | None = None) -> None:
    with engine.begin() as conn:
        for job_id in ids:
            assert jobs.finish(
                conn, job_id, Outcome(JobStatus.SUCCEEDED, summary=f"summary of {job_id}", chunks=2)
            )
        if batch_id is not None:
            batches.complete_if_done(conn, batch_id)


def test_a_job_stream_follows_the_row_to_its_end(settings: Settings, engine: Engine) -> None:
    with live_gateway(settings) as (base, _app), httpx.Client(base_url=base) as http:
        job = http.post("/v1/summaries", json={"text": DOC, "mode": "async"}).json()
        with reading(http, f"/v1/summaries/{job['id']}/events") as reader:
            assert reader.response.headers["content-type"].startswith("text/event-stream")
            first = reader.next()
            assert (first.event, first.json()["status"]) == ("status", "queued")
            assert first.json() == http.get(f"/v1/summaries/{job['id']}").json()
            claim(engine, [job["id"]])
            assert (reader.next().event, reader.events[-1].json()["status"]) == ("status", "running")
            with engine.begin() as conn:
                jobs.record_progress(conn, {job["id"]: (1, 3)})
            progress = reader.next()
            assert progress.event == "progress"
            assert progress.json()["progress"] == {"done": 1, "total": 3}
            finish(engine, [job["id"]])
            ended = reader.rest()
        assert [event.event for event in ended] == ["status", "end"]
        assert ended[-1].json()["status"] == "succeeded"
        assert ended[-1].json()["summary"] == f"summary of {job['id']}"
        ids = [event.id for event in reader.events]
        assert all(ids) and len(set(ids[:-1])) == len(ids) - 1

        # A client that saw the running state resumes with only what came after it.
        with reading(http, f"/v1/summaries/{job['id']}/events", last_event_id=ids[1]) as resumed:
            assert [event.event for event in resumed.rest()] == ["status", "end"]
        # One that saw the end gets the end alone.
        with reading(http, f"/v1/summaries/{job['id']}/events", last_event_id=ids[-1]) as resumed:
            assert [event.event for event in resumed.rest()] == ["end"]


def test_several_clients_on_one_batch_see_the_same_sequence(settings: Settings, engine: Engine) -> None:
    with live_gateway(settings) as (base, _app), httpx.Client(base_url=base) as http:
        batch = upload(http, 3)
        path = f"/v1/batches/{batch['id']}/events"
        with reading(http, path) as one, reading(http, path) as two:
            readers = (one, two)
            for reader in readers:
                first = reader.next()
                assert first.event == "status"
                assert first.json()["counts"]["queued"] == 3
            ids = document_ids(engine, batch["id"])
            claim(engine, ids)
            for reader in readers:
                assert reader.until("progress")[-1].json()["counts"]["running"] == 3
            finish(engine, ids[:1], batch["id"])
            for reader in readers:
                assert [event.event for event in reader.until("progress")] == ["document", "progress"]
            finish(engine, ids[1:], batch["id"])
            for reader in readers:
                assert [event.event for event in reader.rest()] == ["document", "document", "status", "end"]
        assert [(e.event, e.id, e.data) for e in one.events] == [(e.event, e.id, e.data) for e in two.events]
        documents = [event.json() for event in one.events if event.event == "document"]
        assert [document["custom_id"] for document in documents] == ["doc-0", "doc-1", "doc-2"]
        assert {document["status"] for document in documents} == {"succeeded"}
        assert one.events[-1].json()["status"] == "completed"
        assert one.events[-1].json()["counts"]["succeeded"] == 3


def test_a_batch_stream_resumes_on_a_restarted_gateway_without_repeats(
    settings: Settings, engine: Engine
) -> None:
    with live_gateway(settings) as (base, _app), httpx.Client(base_url=base) as http:
        batch = upload(http, 3)
        ids = document_ids(engine, batch["id"])
        claim(engine, ids)
        finish(engine, ids[:1], batch["id"])
        with reading(http, f"/v1/batches/{batch['id']}/events") as reader:
            before = reader.until("document")
        last_id = before[-1].id
    # While no gateway runs, another document ends.
    finish(engine, ids[1:2], batch["id"])
    with live_gateway(settings) as (base, _app), httpx.Client(base_url=base) as http:
        with reading(http, f"/v1/batches/{batch['id']}/events", last_event_id=last_id) as reader:
            caught_up = reader.until("progress")
            finish(engine, ids[2:], batch["id"])
            after = caught_up + reader.rest()
    assert [event.event for event in before] == ["status", "document"]
    assert [event.event for event in after] == ["document", "progress", "document", "status", "end"]
    announced = [event.json()["id"] for event in before + after if event.event == "document"]
    assert announced == ids
    assert after[-1].json()["counts"]["succeeded"] == 3


def test_heartbeats_retry_advice_and_the_stream_limit(sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url,
        **{
            **FAST,
            "CONDENSE_GATEWAY__EVENTS_HEARTBEAT_S": "0.05",
            "CONDENSE_GATEWAY__EVENTS_RETRY_MS": "1500",
            "CONDENSE_GATEWAY__EVENTS_MAX_STREAMS": "1",
        },
    )
    with live_gateway(settings) as (base, app), httpx.Client(base_url=base) as http:
        job = http.post("/v1/summaries", json={"text": DOC, "mode": "async"}).json()
        path = f"/v1/summaries/{job['id']}/events"
        with http.stream("GET", path) as response:
            lines = response.iter_lines()
            assert next(lines) == "retry: 1500"
            beats = 0
            for line in lines:
                beats += line == ": keep-alive"
                if beats == 2:
                    break
            # The one stream this gateway may serve is open: the next is refused, with advice.
            refused = http.get(path)
            assert_error(refused, 503, "overloaded")
            assert refused.headers["retry-after"] == "2"
        assert beats == 2
    assert app.state.events.open == 0


def test_event_streams_check_the_key_and_the_tenant(settings: Settings, engine: Engine) -> None:
    owner = {"Authorization": f"Bearer {create_key(engine, 'default').key}"}
    other = {"Authorization": f"Bearer {create_key(engine, 'acme').key}"}
    with running_gateway(settings) as client:
        client.headers.update(owner)
        job = client.post("/v1/summaries", json={"text": DOC, "mode": "async"}).json()
        batch = upload(client, 1)
        assert_error(client.get("/v1/summaries/not-an-id/events"), 404, "not_found")
        assert_error(client.get(f"/v1/batches/{job['id']}/events"), 404, "not_found")
        for path in (f"/v1/summaries/{job['id']}/events", f"/v1/batches/{batch['id']}/events"):
            assert_error(client.get(path, headers={"Authorization": ""}), 401, "unauthorized")
            assert_error(client.get(path, headers={"Authorization": "Bearer cnd_wrong"}), 401, "unauthorized")
            # Another tenant's key finds nothing there.
            assert_error(client.get(path, headers=other), 404, "not_found")


def test_positions_round_trip_and_unknown_ids_start_afresh() -> None:
    job = JobPosition(2, 1, "running", 3, 10)
    assert JobPosition.parse(job.encode()) == job
    moment = utcnow()
    batch = BatchPosition(("in_progress", 1, 2, 3, 0, 0), (moment, "0190-id"))
    assert BatchPosition.parse(batch.encode()) == batch
    assert BatchPosition.parse(BatchPosition(batch.state, None).encode()) == BatchPosition(batch.state, None)
    for junk in ("", "1.2", "x.0.queued.0.0", "in_progress.1.2.3.0.0~notanumber.id", "a~b"):
        assert JobPosition.parse(junk) is None or junk == ""
        assert BatchPosition.parse(junk) is None


def test_documents_wait_for_the_settle_time_unless_the_batch_ended(
    settings: Settings, engine: Engine
) -> None:
    with running_gateway(settings) as client:
        batch = upload(client, 2)
    ids = document_ids(engine, batch["id"])
    claim(engine, ids)
    finish(engine, ids[:1])
    with engine.connect() as conn:
        job = jobs.get(conn, ids[0])
        assert job.finished_at is not None
        just_before = batches.finished_after(
            conn, batch["id"], after=None, finished_before=job.finished_at, limit=10
        )
        later = batches.finished_after(
            conn,
            batch["id"],
            after=None,
            finished_before=job.finished_at + timedelta(microseconds=1),
            limit=10,
        )
        past_it = batches.finished_after(
            conn, batch["id"], after=(job.finished_at, job.id), finished_before=None, limit=10
        )
    assert just_before == []
    assert [found.id for found in later] == ids[:1]
    assert past_it == []
    # Streams poll often: they never read the documents themselves.
    assert later[0].input_text == ""
    with engine.connect() as conn:
        assert jobs.get(conn, ids[0], with_text=False).input_text == ""
        assert jobs.get(conn, ids[0]).input_text.startswith(DOC)
