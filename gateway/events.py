"""Live progress of a job or a batch as Server-Sent Events, derived from the rows on every poll.

The database is the source of truth: a stream keeps no state that another replica (or this one,
restarted) could not rebuild from the rows and the client's ``Last-Event-ID``. Every event id is a
position made of row values:

- a job stream's id is ``attempts.retries.status.progress_done.progress_total``: whatever a client
  saw last, the stream resumes by comparing it with the row, and sends the row when it differs;
- a batch stream's id is the batch's status and counts, then ``~`` and the (finished_at, job id)
  of the last document announced: documents are announced in that order, so a resumed stream
  sends exactly those after it.

Events: ``status`` (the first of a fresh stream, and whenever the status changes), ``progress``
(counts or chunks changed, status not), ``document`` (batch streams: one document of the batch
ended), ``end`` (the final state; the server then closes the stream). A resumed stream sends only
what changed after its ``Last-Event-ID``, so its first event may be a ``progress`` or ``document``
one, or nothing until something changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection
from starlette.types import Receive, Scope, Send

from gateway.batches import batch_public
from gateway.deps import StateDep, TenantDep
from gateway.errors import UnavailableError
from gateway.ids import BatchId, JobId
from gateway.state import GatewayState
from schema.api import job_to_public
from schema.models import utcnow
from schema.settings import GatewaySettings
from schema.store import batches, jobs
from schema.store.errors import NotFoundError
from schema.store.records import BatchCounts, BatchRecord, JobRecord

router = APIRouter(prefix="/v1")

# Documents announced per read: a batch of thousands that ended while nobody watched is sent in
# pages, without waiting for the next poll between them.
_DOCUMENTS_PAGE = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FINAL_BATCH = frozenset({batches.BatchStatus.COMPLETED, batches.BatchStatus.CANCELED})
HEARTBEAT = b": keep-alive\n\n"


class StreamLimitError(UnavailableError):
    """This gateway already serves as many event streams as it may; another replica may not."""

    code = "overloaded"


class EventStreams:
    """The open streams of one gateway process, bounded; ``clock`` is the wall clock a batch
    stream measures the settle time of documents with (replaced in tests)."""

    def __init__(self, limit: int, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.limit = limit
        self.clock = clock
        self.open = 0

    def acquire(self, retry_after_s: float) -> None:
        if self.open >= self.limit:
            raise StreamLimitError(
                f"this gateway already serves {self.limit} event streams; retry later or poll instead",
                retry_after_s=retry_after_s,
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1


def format_event(event: str, data: str, event_id: str) -> bytes:
    # The data is compact JSON: one line, whatever newlines a summary holds (escaped as \n).
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


# -- positions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobPosition:
    attempts: int
    retries: int
    status: str
    done: int
    total: int

    @classmethod
    def of(cls, job: JobRecord) -> JobPosition:
        return cls(
            job.attempts or 0, job.retries or 0, job.status, job.progress_done or 0, job.progress_total or 0
        )

    def encode(self) -> str:
        return f"{self.attempts}.{self.retries}.{self.status}.{self.done}.{self.total}"

    @classmethod
    def parse(cls, text: str | None) -> JobPosition | None:
        """The position an id names; None for none or one this API did not make (a fresh stream)."""
        parts = (text or "").split(".")
        if len(parts) != 5:
            return None
        try:
            return cls(int(parts[0]), int(parts[1]), parts[2], int(parts[3]), int(parts[4]))
        except ValueError:
            return None


BatchState = tuple[str, int, int, int, int, int]


def batch_state(batch: BatchRecord, counts: BatchCounts) -> BatchState:
    return (batch.status, counts.queued, counts.running, counts.succeeded, counts.failed, counts.canceled)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class BatchPosition:
    state: BatchState
    document: tuple[datetime, str] | None

    def encode(self) -> str:
        head = ".".join(str(part) for part in self.state)
        if self.document is None:
            return head + "~"
        moment, job_id = self.document
        return f"{head}~{_micros(moment)}.{job_id}"

    @classmethod
    def parse(cls, text: str | None) -> BatchPosition | None:
        head, sep, tail = (text or "").partition("~")
        parts = head.split(".")
        if not sep or len(parts) != 6:
            return None
        try:
            state: BatchState = (parts[0], *(int(part) for part in parts[1:]))  # type: ignore[assignment]
            document = None
            if tail:
                micros, _, job_id = tail.partition(".")
                if not job_id:
                    return None
                document = (_EPOCH + timedelta(microseconds=int(micros)), job_id)
        except (ValueError, OverflowError):
            return None
        return cls(state, document)


# -- pacing -----------------------------------------------------------------------------------


class _Pacer:
    """Waits between polls, and says when a heartbeat is due on the way."""

    def __init__(self, settings: GatewaySettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._poll_s = settings.events_poll_s
        self._heartbeat_s = settings.events_heartbeat_s
        self._clock = clock
        self._next_heartbeat = clock() + self._heartbeat_s

    async def until_next_poll(self) -> AsyncIterator[bytes]:
        next_poll = self._clock() + self._poll_s
        while True:
            now = self._clock()
            if now >= self._next_heartbeat:
                yield HEARTBEAT
                self._next_heartbeat = now + self._heartbeat_s
            if now >= next_poll:
                return
            await asyncio.sleep(min(next_poll, self._next_heartbeat) - now)


class _EventStreamResponse(StreamingResponse):
    """Gives its slot back however the stream ends, even when the client left before the first byte."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _open_stream(request: Request, state: GatewayState, content: AsyncIterator[bytes]) -> StreamingResponse:
    streams: EventStreams = request.app.state.events
    streams.acquire(retry_after_s=max(1.0, state.settings.gateway.events_retry_ms / 1000))
    return _EventStreamResponse(content, streams.release)


# -- the streams ------------------------------------------------------------------------------


async def job_events(
    state: GatewayState, job_id: str, tenant: str, last: JobPosition | None
) -> AsyncIterator[bytes]:
    settings = state.settings.gateway
    pacer = _Pacer(settings)
    yield f"retry: {settings.events_retry_ms}\n\n".encode()
    sent = last
    while True:
        try:
            job = await state.read(jobs.get, job_id, tenant=tenant, with_text=False)
        except NotFoundError:
            return  # deleted by retention while watched: nothing more will happen to it
        position = JobPosition.of(job)
        public = job_to_public(job).model_dump_json()
        if position != sent:
            kind = "status" if sent is None or sent.status != position.status else "progress"
            yield format_event(kind, public, position.encode())
            sent = position
        if job.is_final:
            yield format_event("end", public, position.encode())
            return
        async for beat in pacer.until_next_poll():
            yield beat


@dataclass(frozen=True)
class _BatchSnapshot:
    batch: BatchRecord
    counts: BatchCounts
    documents: list[JobRecord]


def _read_batch(
    conn: Connection,
    batch_id: str,
    tenant: str,
    after: tuple[datetime, str] | None,
    settled_before: datetime,
) -> _BatchSnapshot:
    # The batch row first: once it reads final, no document of it changes any more, so the
    # documents read after it are complete and need no settle time.
    batch = batches.get(conn, batch_id, tenant=tenant)
    counts = batches.counts(conn, batch_id)
    final = batch.status in _FINAL_BATCH
    documents = batches.finished_after(
        conn,
        batch_id,
        after=after,
        finished_before=None if final else settled_before,
        limit=_DOCUMENTS_PAGE,
    )
    return _BatchSnapshot(batch, counts, documents)


async def batch_events(
    state: GatewayState, streams: EventStreams, batch_id: str, tenant: str, last: BatchPosition | None
) -> AsyncIterator[bytes]:
    settings = state.settings.gateway
    pacer = _Pacer(settings)
    settle = timedelta(seconds=settings.events_settle_s)
    yield f"retry: {settings.events_retry_ms}\n\n".encode()
    sent: BatchState | None = last.state if last else None
    cursor = last.document if last else None
    while True:
        try:
            snapshot = await state.read(_read_batch, batch_id, tenant, cursor, streams.clock() - settle)
        except NotFoundError:
            return
        current = batch_state(snapshot.batch, snapshot.counts)
        public = batch_public(snapshot.batch, snapshot.counts).model_dump_json()
        if sent is None:
            # A fresh stream starts with where the batch is, then catches up on its documents.
            sent = current
            yield format_event("status", public, BatchPosition(sent, cursor).encode())
        for document in snapshot.documents:
            assert document.finished_at is not None  # noqa: S101 - finished_after reads ended jobs only
            cursor = (document.finished_at, document.id)
            yield format_event(
                "document", job_to_public(document).model_dump_json(), BatchPosition(sent, cursor).encode()
            )
        if len(snapshot.documents) == _DOCUMENTS_PAGE:
            continue  # more ended documents wait; the state is sent once they are out
        if current != sent:
            kind = "status" if current[0] != sent[0] else "progress"
            sent = current
            yield format_event(kind, public, BatchPosition(sent, cursor).encode())
        if snapshot.batch.status in _FINAL_BATCH:
            yield format_event("end", public, BatchPosition(sent, cursor).encode())
            return
        async for beat in pacer.until_next_poll():
            yield beat


# -- routes -----------------------------------------------------------------------------------

_SSE_STREAM = (
    "retry: 3000\n\n"
    "id: 0.0.queued.0.0\nevent: status\ndata: {...}\n\n"
    "id: 1.0.running.2.10\nevent: status\ndata: {...}\n\n"
    ": keep-alive\n\n"
    "id: 1.0.succeeded.10.10\nevent: status\ndata: {...}\n\n"
    "id: 1.0.succeeded.10.10\nevent: end\ndata: {...}\n\n"
)


def _sse_response(description: str, events: list[str], data: str) -> dict[int | str, dict[str, Any]]:
    # The schema of a text/event-stream answer describes each event of the stream.
    event_schema = {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"type": "string", "enum": events},
            "id": {"type": "string", "description": "Send it back as Last-Event-ID to resume after it."},
            "data": {"type": "string", "contentMediaType": "application/json", "description": data},
            "retry": {"type": "integer", "description": "Advised reconnection delay, in milliseconds."},
        },
    }
    example = {"event": "status", "id": "0.0.queued.0.0", "data": '{"id": "...", "status": "queued"}'}
    return {
        200: {
            "description": f"{description}. A stream reads like this:\n\n```\n{_SSE_STREAM}```",
            "content": {"text/event-stream": {"schema": event_schema, "example": example}},
        }
    }


LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=200,
        description="The id of the last event received: the stream resumes after it.",
    ),
]


@router.get(
    "/summaries/{job_id}/events",
    tags=["summaries"],
    response_class=StreamingResponse,
    responses=_sse_response(
        "status, progress and end events of the job, as Server-Sent Events",
        ["status", "progress", "end"],
        "the job, as GET /v1/summaries/{job_id} answers it",
    ),
)
async def summary_events(
    request: Request, job_id: JobId, state: StateDep, tenant: TenantDep, last_event_id: LastEventId = None
) -> StreamingResponse:
    # Read before the stream opens: a wrong id or tenant is a 404, not an empty stream.
    await state.read(jobs.get, job_id, tenant=tenant, with_text=False)
    return _open_stream(request, state, job_events(state, job_id, tenant, JobPosition.parse(last_event_id)))


@router.get(
    "/batches/{batch_id}/events",
    tags=["batches"],
    response_class=StreamingResponse,
    responses=_sse_response(
        "status, progress, document and end events of the batch, as Server-Sent Events",
        ["status", "progress", "document", "end"],
        "the batch as GET /v1/batches/{batch_id} answers it; for a document event, the document's job",
    ),
)
async def batch_events_route(
    request: Request, batch_id: BatchId, state: StateDep, tenant: TenantDep, last_event_id: LastEventId = None
) -> StreamingResponse:
    await state.read(batches.get, batch_id, tenant=tenant)
    streams: EventStreams = request.app.state.events
    content = batch_events(state, streams, batch_id, tenant, BatchPosition.parse(last_event_id))
    return _open_stream(request, state, content)
