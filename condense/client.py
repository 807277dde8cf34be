"""A Python client of the condense HTTP API, on httpx: :class:`Client` and :class:`AsyncClient`.

Both have the same methods; the async one's are coroutines (and async iterators)::

    from condense.client import Client

    with Client("http://127.0.0.1:8000", api_key="cnd_...") as client:
        job = client.submit(long_text, max_words=80)
        job = client.wait(job.id, timeout_s=120)        # follows the job's event stream
        print(job.status, job.summary)
        batch = client.upload_batch("docs/")            # a folder, files, a .zip or a .jsonl
        for result in client.iter_results(batch.id):   # as each document ends
            print(result.custom_id, result.status, result.summary)

Every error answer of the API raises a :class:`ClientError` subclass, one per family of codes,
carrying ``code``, ``message``, ``status`` and ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from common.errors import CondenseError
from schema.api import BatchPublic, SummaryJobList, SummaryJobPublic

API_KEY_ENV_VAR = "CONDENSE_API_KEY"
UPLOADABLE = frozenset({".txt", ".md", ".rst", ".html", ".htm", ".pdf", ".zip", ".jsonl"})
_FINAL_JOB = frozenset({"succeeded", "failed", "canceled"})
_FINAL_BATCH = frozenset({"completed", "canceled"})

# -- errors -----------------------------------------------------------------------------------


class ClientError(CondenseError):
    """An error answer of the API (or no answer in time). ``status`` is 0 when none came."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, status: int = 0, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" (HTTP {self.status})" if self.status else "")


class InvalidRequestError(ClientError):
    """400 or 422: the request cannot succeed as sent (a field, the params, an upload)."""


class AuthenticationError(ClientError):
    """401: no API key, or one the gateway does not know (pass ``api_key`` or set CONDENSE_API_KEY)."""


class NotFoundError(ClientError):
    """404: no such job, batch or delivery for this key's tenant."""


class ConflictError(ClientError):
    """409: the job or batch already ended, or an Idempotency-Key was reused with another body."""


class PayloadTooLargeError(ClientError):
    """413: the text, metadata or upload is over its limit."""


class UnavailableError(ClientError):
    """503: not now (model loading, queue full, too many streams); see ``retry_after_s``."""

    retryable = True


class DeadlineExceededError(ClientError):
    """504: a sync answer was not ready within its deadline; submit with mode="async"."""

    retryable = True


class ServerError(ClientError):
    """500 and other answers the server should not give."""


class WaitTimeoutError(ClientError):
    """The job or batch did not end within ``timeout_s`` of a wait (it goes on running)."""

    code = "wait_timeout"


_FAMILY_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    503: UnavailableError,
    504: DeadlineExceededError,
}


def error_from_response(response: httpx.Response) -> ClientError:
    """The typed error an error answer stands for; its class follows the status, as the API maps codes."""
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body = response.json()
        code, message = str(body["error"]["code"]), str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()
        if text:
            message = text[:500]
    retry_after: float | None = None
    header = response.headers.get("Retry-After")
    if header is not None:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    family = _FAMILY_BY_STATUS.get(response.status_code, ServerError)
    return family(message, code=code, status=response.status_code, retry_after_s=retry_after)


def _checked(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in (expected or (200,)):
        raise error_from_response(response)
    return response


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: its ``event`` name, ``id`` and ``data`` (JSON text for this API)."""

    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Turns the lines of a ``text/event-stream`` into events (comments and ``retry:`` are skipped)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_event_id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and not self._event:
                return None
            event = ServerEvent(self._event or "message", self._id, "\n".join(self._data))
            self.last_event_id = self._id
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def parse_events(lines: Iterable[str]) -> Iterator[ServerEvent]:
    decoder = SSEDecoder()
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event


@dataclass(frozen=True)
class BatchResult:
    """One ended document of a batch."""

    job_id: str
    custom_id: str | None
    status: str
    summary: str | None
    error: dict[str, str] | None

    @classmethod
    def of_job(cls, job: SummaryJobPublic) -> BatchResult:
        error = job.error.model_dump() if job.error else None
        return cls(job.id, job.custom_id, job.status.value, job.summary, error)

    @classmethod
    def of_line(cls, line: dict[str, Any]) -> BatchResult:
        return cls(
            line["job_id"], line.get("custom_id"), line["status"], line.get("summary"), line.get("error")
        )


# -- requests both clients make ---------------------------------------------------------------


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _submit_body(
    text: str,
    *,
    params: dict[str, Any] | None,
    mode: str,
    webhook_url: str | None,
    webhook_secret: str | None,
    email: str | None,
    metadata: dict[str, Any] | None,
    timeout_s: float | None,
    extra_params: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text, "mode": mode, "params": {**(params or {}), **extra_params}}
    if webhook_url is not None:
        body["webhook"] = {"url": webhook_url, **({"secret": webhook_secret} if webhook_secret else {})}
    if email is not None:
        body["email"] = email
    if metadata:
        body["metadata"] = metadata
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    return body


def upload_files(
    path_or_files: str | Path | Sequence[str | Path | tuple[str, bytes]],
) -> list[tuple[str, bytes]]:
    """What to upload, as (name, content): folders are walked in name order for the formats the API takes."""
    items: Sequence[str | Path | tuple[str, bytes]] = (
        [path_or_files] if isinstance(path_or_files, str | Path) else path_or_files
    )
    found: list[tuple[str, bytes]] = []
    for item in items:
        if isinstance(item, tuple):
            found.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found += [
                (p.relative_to(path).as_posix(), p.read_bytes())
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in UPLOADABLE
            ]
        elif path.is_file():
            found.append((path.name, path.read_bytes()))
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    if not found:
        raise FileNotFoundError("nothing to upload")
    return found


def _batch_form(
    params: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    email: str | None,
) -> dict[str, str]:
    form = {
        "params": json.dumps(params) if params else None,
        "metadata": json.dumps(metadata) if metadata else None,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "email": email,
    }
    return {name: value for name, value in form.items() if value is not None}


def _list_params(status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {"limit": limit}
    if status is not None:
        query["status"] = status
    if cursor is not None:
        query["cursor"] = cursor
    return query


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeoutError(f"{what} did not end in time")
    return left


# Answers after which a stream is not worth retrying, and polling takes over.
_STREAM_FALLBACK = (httpx.TransportError, UnavailableError, ServerError)


class Client:
    """Synchronous client. ``api_key`` defaults to nothing; the CLI passes $CONDENSE_API_KEY."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        poll_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.poll_s = poll_s
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, path: str, *expected: int, **kwargs: Any) -> Any:
        return _checked(self._http.request(method, path, **kwargs), *expected).json()

    # jobs

    def submit(
        self,
        text: str,
        *,
        params: dict[str, Any] | None = None,
        mode: str = "auto",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        email: str | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
        **summary_params: Any,
    ) -> SummaryJobPublic:
        """Submit a text; keyword arguments not named here are summary params (``max_words=80``)."""
        body = _submit_body(
            text,
            params=params,
            mode=mode,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            email=email,
            metadata=metadata,
            timeout_s=timeout_s,
            extra_params=summary_params,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return SummaryJobPublic.model_validate(
            self._json("POST", "/v1/summaries", 200, 202, json=body, headers=headers)
        )

    def get(self, job_id: str) -> SummaryJobPublic:
        return SummaryJobPublic.model_validate(self._json("GET", f"/v1/summaries/{job_id}"))

    def cancel(self, job_id: str) -> SummaryJobPublic:
        return SummaryJobPublic.model_validate(self._json("POST", f"/v1/summaries/{job_id}/cancel"))

    def list(
        self, *, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> SummaryJobList:
        return SummaryJobList.model_validate(
            self._json("GET", "/v1/summaries", params=_list_params(status, limit, cursor))
        )

    def events(self, path: str, *, last_event_id: str | None = None) -> Iterator[ServerEvent]:
        """The events of ``/v1/summaries/{id}/events`` or ``/v1/batches/{id}/events``, until ``end``."""
        return self._events(path, last_event_id=last_event_id, deadline=None)

    def job_events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[ServerEvent]:
        """A job's ``status``/``progress``/``end`` events; ``last_event_id`` resumes after that event."""
        return self.events(f"/v1/summaries/{job_id}/events", last_event_id=last_event_id)

    def batch_events(self, batch_id: str, *, last_event_id: str | None = None) -> Iterator[ServerEvent]:
        """A batch's ``status``/``progress``/``document``/``end`` events."""
        return self.events(f"/v1/batches/{batch_id}/events", last_event_id=last_event_id)

    def _events(
        self, path: str, *, last_event_id: str | None, deadline: float | None
    ) -> Iterator[ServerEvent]:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        # Heartbeats come every few seconds: a read timeout only catches a dead connection.
        read_s = None if deadline is None else max(0.1, deadline - time.monotonic())
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_s)
        with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                raise error_from_response(response)
            decoder = SSEDecoder()
            for line in response.iter_lines():
                if deadline is not None:
                    _remaining(deadline, path)
                event = decoder.feed(line)
                if event is None:
                    continue
                yield event
                if event.event == "end":
                    return

    def wait(self, job_id: str, *, timeout_s: float = 300.0) -> SummaryJobPublic:
        """The job once it ended: follows its event stream, and polls when the stream is unavailable.

        Raises :class:`WaitTimeoutError` after ``timeout_s`` (the job goes on).
        """
        deadline = time.monotonic() + timeout_s
        what = f"job {job_id}"
        try:
            for event in self._events(
                f"/v1/summaries/{job_id}/events", last_event_id=None, deadline=deadline
            ):
                if event.event == "end":
                    return SummaryJobPublic.model_validate_json(event.data)
        except httpx.ReadTimeout as exc:
            raise WaitTimeoutError(f"{what} did not end within {timeout_s} s") from exc
        except _STREAM_FALLBACK:
            pass
        while True:
            job = self.get(job_id)
            if job.status.value in _FINAL_JOB:
                return job
            time.sleep(min(self.poll_s, _remaining(deadline, what)))

    # batches

    def upload_batch(
        self,
        path_or_files: str | Path | Sequence[str | Path | tuple[str, bytes]],
        *,
        params: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        email: str | None = None,
    ) -> BatchPublic:
        files = [("files", item) for item in upload_files(path_or_files)]
        form = _batch_form(params, metadata, webhook_url, webhook_secret, email)
        return BatchPublic.model_validate(self._json("POST", "/v1/batches", 202, files=files, data=form))

    def get_batch(self, batch_id: str) -> BatchPublic:
        return BatchPublic.model_validate(self._json("GET", f"/v1/batches/{batch_id}"))

    def list_batches(self, *, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        page: dict[str, Any] = self._json("GET", "/v1/batches", params=_list_params(None, limit, cursor))
        page["data"] = [BatchPublic.model_validate(item) for item in page["data"]]
        return page

    def cancel_batch(self, batch_id: str) -> BatchPublic:
        return BatchPublic.model_validate(self._json("POST", f"/v1/batches/{batch_id}/cancel"))

    def results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """The finished documents so far, as the JSON lines of ``/v1/batches/{id}/results``."""
        with self._http.stream("GET", f"/v1/batches/{batch_id}/results") as response:
            if response.status_code != 200:
                response.read()
                raise error_from_response(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def iter_results(self, batch_id: str) -> Iterator[BatchResult]:
        """Each document's result as it ends, until the batch ends; polls when the stream is unavailable."""
        seen: set[str] = set()
        last_event_id: str | None = None
        try:
            while True:
                resumed_from = last_event_id
                for event in self.events(f"/v1/batches/{batch_id}/events", last_event_id=last_event_id):
                    last_event_id = event.id or last_event_id
                    if event.event == "document":
                        result = BatchResult.of_job(SummaryJobPublic.model_validate_json(event.data))
                        seen.add(result.job_id)
                        yield result
                    elif event.event == "end":
                        return
                if last_event_id == resumed_from:
                    break  # closed with no news: polling tells why (a deleted batch, an old server)
        except _STREAM_FALLBACK:
            pass
        while True:
            final = self.get_batch(batch_id).status in _FINAL_BATCH
            for line in self.results(batch_id):
                if line["job_id"] not in seen:
                    seen.add(line["job_id"])
                    yield BatchResult.of_line(line)
            if final:
                return
            time.sleep(self.poll_s)

    def wait_batch(self, batch_id: str, *, timeout_s: float = 3_600.0) -> BatchPublic:
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self.get_batch(batch_id)
            if batch.status in _FINAL_BATCH:
                return batch
            time.sleep(min(self.poll_s, _remaining(deadline, f"batch {batch_id}")))

    # notifications

    def deliveries(self, job_id: str) -> builtins.list[dict[str, Any]]:
        data: builtins.list[dict[str, Any]] = self._json("GET", f"/v1/summaries/{job_id}/deliveries")["data"]
        return data

    def redeliver(self, delivery_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._json("POST", f"/v1/deliveries/{delivery_id}/redeliver", 202)
        return answer

    def get_webhook_endpoint(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._json("GET", "/v1/webhook-endpoint")
        return answer

    # models

    def models(self) -> builtins.list[dict[str, Any]]:
        """The model variants the gateway serves (``GET /v1/models``)."""
        answer: builtins.list[dict[str, Any]] = self._json("GET", "/v1/models")["data"]
        return answer

    def set_webhook_endpoint(self, url: str, *, secret: str | None = None) -> dict[str, Any]:
        body = {"url": url, **({"secret": secret} if secret else {})}
        answer: dict[str, Any] = self._json("PUT", "/v1/webhook-endpoint", json=body)
        return answer

    def delete_webhook_endpoint(self) -> None:
        _checked(self._http.delete("/v1/webhook-endpoint"), 204)


class AsyncClient:
    """The same methods as :class:`Client`, as coroutines and async iterators."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        poll_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.poll_s = poll_s
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, *expected: int, **kwargs: Any) -> Any:
        return _checked(await self._http.request(method, path, **kwargs), *expected).json()

    async def submit(
        self,
        text: str,
        *,
        params: dict[str, Any] | None = None,
        mode: str = "auto",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        email: str | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
        **summary_params: Any,
    ) -> SummaryJobPublic:
        body = _submit_body(
            text,
            params=params,
            mode=mode,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            email=email,
            metadata=metadata,
            timeout_s=timeout_s,
            extra_params=summary_params,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return SummaryJobPublic.model_validate(
            await self._json("POST", "/v1/summaries", 200, 202, json=body, headers=headers)
        )

    async def get(self, job_id: str) -> SummaryJobPublic:
        return SummaryJobPublic.model_validate(await self._json("GET", f"/v1/summaries/{job_id}"))

    async def cancel(self, job_id: str) -> SummaryJobPublic:
        return SummaryJobPublic.model_validate(await self._json("POST", f"/v1/summaries/{job_id}/cancel"))

    async def list(
        self, *, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> SummaryJobList:
        return SummaryJobList.model_validate(
            await self._json("GET", "/v1/summaries", params=_list_params(status, limit, cursor))
        )

    async def events(self, path: str, *, last_event_id: str | None = None) -> AsyncIterator[ServerEvent]:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                raise error_from_response(response)
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is None:
                    continue
                yield event
                if event.event == "end":
                    return

    def job_events(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[ServerEvent]:
        return self.events(f"/v1/summaries/{job_id}/events", last_event_id=last_event_id)

    def batch_events(self, batch_id: str, *, last_event_id: str | None = None) -> AsyncIterator[ServerEvent]:
        return self.events(f"/v1/batches/{batch_id}/events", last_event_id=last_event_id)

    async def wait(self, job_id: str, *, timeout_s: float = 300.0) -> SummaryJobPublic:
        deadline = time.monotonic() + timeout_s
        what = f"job {job_id}"

        async def follow() -> SummaryJobPublic | None:
            async for event in self.events(f"/v1/summaries/{job_id}/events"):
                if event.event == "end":
                    return SummaryJobPublic.model_validate_json(event.data)
            return None

        try:
            ended = await asyncio.wait_for(follow(), timeout=_remaining(deadline, what))
        except TimeoutError as exc:
            raise WaitTimeoutError(f"{what} did not end within {timeout_s} s") from exc
        except _STREAM_FALLBACK:
            ended = None
        if ended is not None:
            return ended
        while True:
            job = await self.get(job_id)
            if job.status.value in _FINAL_JOB:
                return job
            await asyncio.sleep(min(self.poll_s, _remaining(deadline, what)))

    async def upload_batch(
        self,
        path_or_files: str | Path | Sequence[str | Path | tuple[str, bytes]],
        *,
        params: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        email: str | None = None,
    ) -> BatchPublic:
        files = [("files", item) for item in await asyncio.to_thread(upload_files, path_or_files)]
        form = _batch_form(params, metadata, webhook_url, webhook_secret, email)
        return BatchPublic.model_validate(
            await self._json("POST", "/v1/batches", 202, files=files, data=form)
        )

    async def get_batch(self, batch_id: str) -> BatchPublic:
        return BatchPublic.model_validate(await self._json("GET", f"/v1/batches/{batch_id}"))

    async def list_batches(self, *, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        page: dict[str, Any] = await self._json(
            "GET", "/v1/batches", params=_list_params(None, limit, cursor)
        )
        page["data"] = [BatchPublic.model_validate(item) for item in page["data"]]
        return page

    async def cancel_batch(self, batch_id: str) -> BatchPublic:
        return BatchPublic.model_validate(await self._json("POST", f"/v1/batches/{batch_id}/cancel"))

    async def results(self, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        async with self._http.stream("GET", f"/v1/batches/{batch_id}/results") as response:
            if response.status_code != 200:
                await response.aread()
                raise error_from_response(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def iter_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        seen: set[str] = set()
        last_event_id: str | None = None
        try:
            while True:
                resumed_from = last_event_id
                async for event in self.events(f"/v1/batches/{batch_id}/events", last_event_id=last_event_id):
                    last_event_id = event.id or last_event_id
                    if event.event == "document":
                        result = BatchResult.of_job(SummaryJobPublic.model_validate_json(event.data))
                        seen.add(result.job_id)
                        yield result
                    elif event.event == "end":
                        return
                if last_event_id == resumed_from:
                    break  # closed with no news: polling tells why (a deleted batch, an old server)
        except _STREAM_FALLBACK:
            pass
        while True:
            final = (await self.get_batch(batch_id)).status in _FINAL_BATCH
            async for line in self.results(batch_id):
                if line["job_id"] not in seen:
                    seen.add(line["job_id"])
                    yield BatchResult.of_line(line)
            if final:
                return
            await asyncio.sleep(self.poll_s)

    async def wait_batch(self, batch_id: str, *, timeout_s: float = 3_600.0) -> BatchPublic:
        deadline = time.monotonic() + timeout_s
        while True:
            batch = await self.get_batch(batch_id)
            if batch.status in _FINAL_BATCH:
                return batch
            await asyncio.sleep(min(self.poll_s, _remaining(deadline, f"batch {batch_id}")))

    async def deliveries(self, job_id: str) -> builtins.list[dict[str, Any]]:
        data: builtins.list[dict[str, Any]] = (await self._json("GET", f"/v1/summaries/{job_id}/deliveries"))[
            "data"
        ]
        return data

    async def redeliver(self, delivery_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._json("POST", f"/v1/deliveries/{delivery_id}/redeliver", 202)
        return answer

    async def models(self) -> builtins.list[dict[str, Any]]:
        """The model variants the gateway serves (``GET /v1/models``)."""
        answer: builtins.list[dict[str, Any]] = (await self._json("GET", "/v1/models"))["data"]
        return answer

    async def get_webhook_endpoint(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._json("GET", "/v1/webhook-endpoint")
        return answer

    async def set_webhook_endpoint(self, url: str, *, secret: str | None = None) -> dict[str, Any]:
        body = {"url": url, **({"secret": secret} if secret else {})}
        answer: dict[str, Any] = await self._json("PUT", "/v1/webhook-endpoint", json=body)
        return answer

    async def delete_webhook_endpoint(self) -> None:
        _checked(await self._http.delete("/v1/webhook-endpoint"), 204)
