"""The /v1 API: submit, poll, list and cancel summary jobs; inspect and replay deliveries."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.app import GatewayState
from gateway.deps import StateDep, TenantDep
from gateway.errors import Conflict, GatewayRetryableError, InvalidRequest, NotFound, PayloadTooLarge
from schema.api import SummaryJobCreate, SummaryJobList, SummaryJobPublic, job_to_public
from schema.events import EVENT_FOR_STATUS, record_job_event, redeliver
from schema.jobs import finish_job, new_job_row
from schema.metrics import JOBS, SUBMISSIONS
from schema.models import (
    JobStatus,
    Route,
    attempts_table,
    deliveries_table,
    jobs_table,
    outbox_table,
    utcnow,
)
from schema.settings import Settings
from schema.urlsafety import check_webhook_url

router = APIRouter(prefix="/v1", tags=["summaries"])

_JOBS = jobs_table
_OUTBOX = outbox_table
_MAX_PAGE = 100
# Above this many characters a text is long whatever the tokenizer says: counting would only
# cost time on the event loop.
_CHARS_PER_TOKEN_CEILING = 20


def _request_hash(body: SummaryJobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(job_id: str) -> str:
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor: not a cursor returned by this API") from exc


async def validate_webhook(settings: Settings, url: str, secret: str | None) -> None:
    """Refuse unsafe targets now (the notifier checks again at connect time) and unsigned hooks."""
    notifier = settings.notifier
    if secret is None and not notifier.webhook_secrets:
        raise InvalidRequest(
            "webhook.secret: required, since no default signing secret is configured (notifier.webhook_secrets)"
        )
    await asyncio.to_thread(
        check_webhook_url,
        url,
        allow_loopback=notifier.allow_loopback,
        allow_private=notifier.allow_private,
        http_allowlist=notifier.http_allowlist,
    )


async def resolve_webhook(
    state: GatewayState, tenant: str, url: str | None, secret: str | None
) -> tuple[str | None, str | None]:
    """The webhook a job notifies: its own, else the tenant's default endpoint, else none.

    A job's own URL without a secret is signed with the tenant endpoint's secret when there is one.
    """
    endpoint = await state.endpoints.get(tenant)
    if url is None:
        return endpoint if endpoint is not None else (None, None)
    if secret is None and endpoint is not None:
        secret = endpoint[1]
    await validate_webhook(state.settings, url, secret)
    return url, secret


def _choose_route(state: GatewayState, body: SummaryJobCreate) -> tuple[Route, int]:
    """Pick sync or async by token count; returns the route and the tokens counted (0 if skipped)."""
    gateway = state.settings.gateway
    if body.mode == "async":
        return Route.ASYNC, 0
    text = body.text
    limit = gateway.sync_max_tokens if body.mode == "sync" else gateway.sync_threshold_tokens
    if len(text) > limit * _CHARS_PER_TOKEN_CEILING:
        tokens = 0
        too_long = True
    else:
        if state.summarizer is None:
            if body.mode == "sync":
                raise GatewayRetryableError("the model is still loading; retry shortly or use mode async")
            return Route.ASYNC, 0
        tokens = state.summarizer.count_tokens(text)
        too_long = tokens > limit
    if body.mode == "sync":
        if too_long:
            raise PayloadTooLarge(
                f"text is longer than the sync limit of {gateway.sync_max_tokens} tokens; "
                'submit it with "mode": "async" (or "auto") and poll the job'
            )
        return Route.SYNC, tokens
    if too_long or not state.model_ready:
        return Route.ASYNC, tokens
    return Route.SYNC, tokens


async def _find_by_idempotency_key(state: GatewayState, tenant: str, key: str) -> dict[str, Any] | None:
    async with state.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(_JOBS).where(_JOBS.c.tenant == tenant, _JOBS.c.idempotency_key == key)
                )
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row is not None else None


def _replay(existing: dict[str, Any], request_hash: str) -> Response:
    if existing["request_hash"] != request_hash:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_conflict",
        )
    return _job_response(existing)


def _job_response(row: dict[str, Any]) -> Response:
    public = job_to_public(row)
    # pydantic's own JSON encoder: a dict round trip through json.dumps costs more per submit.
    content = public.model_dump_json()
    if public.route == "sync" and public.status == JobStatus.SUCCEEDED:
        return Response(content, status_code=200, media_type="application/json")
    return Response(
        content,
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/summaries/{public.id}"},
    )


async def _store(state: GatewayState, job: dict[str, Any], *, outbox_topic: str | None) -> None:
    needs_event = job["status"] != JobStatus.QUEUED.value and (job["webhook_url"] or job["email"])
    if job["idempotency_key"] is None and not needs_event:
        await state.committer.insert(job, outbox_topic=outbox_topic)
        return
    # Rare paths (idempotent or notifying submits) take their own transaction so that a
    # uniqueness conflict or the event rows never touch the neighbours of a group commit.
    async with state.engine.begin() as conn:
        await conn.execute(insert(_JOBS), [job])
        if outbox_topic:
            await conn.execute(insert(_OUTBOX), [{"job_id": job["id"], "topic": outbox_topic}])
        if needs_event:
            await conn.run_sync(
                lambda sync_conn: record_job_event(sync_conn, job, EVENT_FOR_STATUS[job["status"]])
            )


@router.post(
    "/summaries",
    status_code=202,
    response_model=SummaryJobPublic,
    responses={200: {"description": "answered at once (short text)"}, 202: {"description": "queued"}},
)
async def create_summary(
    body: SummaryJobCreate,
    state: StateDep,
    tenant: TenantDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    settings = state.settings
    if len(body.text.encode()) > settings.gateway.max_text_bytes:
        raise PayloadTooLarge(f"text is larger than the limit of {settings.gateway.max_text_bytes} bytes")
    # Only an idempotent replay compares bodies; hashing megabytes for every submit would not pay.
    request_hash = _request_hash(body) if idempotency_key is not None else None
    if idempotency_key is not None:
        existing = await _find_by_idempotency_key(state, tenant, idempotency_key)
        if existing is not None and request_hash is not None:
            return _replay(existing, request_hash)
    if state.summarizer is None:
        raise GatewayRetryableError("the model is still loading; retry shortly")
    params = state.summarizer.validate_params(body.params)
    webhook = await resolve_webhook(
        state,
        tenant,
        body.webhook.url if body.webhook else None,
        body.webhook.secret if body.webhook else None,
    )
    route, tokens = _choose_route(state, body)
    job = new_job_row(
        tenant=tenant,
        text=body.text,
        route=route.value,
        input_tokens=tokens,
        params=params.model_dump(exclude_none=True),
        metadata=body.metadata,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        webhook_url=webhook[0],
        webhook_secret=webhook[1],
        email=str(body.email) if body.email else None,
    )
    if route is Route.SYNC:
        assert state.batcher is not None  # noqa: S101 - guaranteed by _choose_route
        gateway = settings.gateway
        timeout_s = min(body.timeout_s or gateway.request_timeout_s, gateway.max_request_timeout_s)
        started = utcnow()
        began = time.perf_counter()
        result = await state.batcher.submit((body.text, params), timeout_s=timeout_s)
        job.update(
            status=JobStatus.SUCCEEDED.value,
            summary=result.summary,
            model=result.model.as_dict(),
            timings={**result.timings, "request_s": time.perf_counter() - began},
            input_tokens=result.input_tokens or tokens,
            progress_done=result.chunks,
            progress_total=result.chunks,
            attempts=1,
            started_at=started,
            finished_at=utcnow(),
        )
        outbox_topic = None
    else:
        outbox_topic = settings.kafka.topic
    try:
        await _store(state, job, outbox_topic=outbox_topic)
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = await _find_by_idempotency_key(state, tenant, idempotency_key)
        if existing is None or request_hash is None:
            raise
        return _replay(existing, request_hash)
    SUBMISSIONS.labels(route=job["route"]).inc()
    JOBS.labels(status=job["status"], route=job["route"]).inc()
    return _job_response(job)


async def _load_job(state: GatewayState, tenant: str, job_id: str) -> dict[str, Any]:
    async with state.engine.connect() as conn:
        row = (
            (await conn.execute(select(_JOBS).where(_JOBS.c.id == job_id, _JOBS.c.tenant == tenant)))
            .mappings()
            .one_or_none()
        )
    if row is None:
        raise NotFound(f"no summary job with id {job_id}")
    return dict(row)


@router.get("/summaries/{job_id}", response_model=SummaryJobPublic)
async def get_summary(job_id: str, state: StateDep, tenant: TenantDep) -> SummaryJobPublic:
    return job_to_public(await _load_job(state, tenant, job_id))


@router.get("/summaries", response_model=SummaryJobList)
async def list_summaries(
    state: StateDep,
    tenant: TenantDep,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SummaryJobList:
    query = select(_JOBS).where(_JOBS.c.tenant == tenant)
    if status is not None:
        query = query.where(_JOBS.c.status == status.value)
    if cursor:
        query = query.where(_JOBS.c.id < decode_cursor(cursor))
    query = query.order_by(_JOBS.c.id.desc()).limit(limit + 1)
    async with state.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    page = [job_to_public(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit and page else None
    return SummaryJobList(data=page, next_cursor=next_cursor)


@router.post("/summaries/{job_id}/cancel", response_model=SummaryJobPublic)
async def cancel_summary(job_id: str, state: StateDep, tenant: TenantDep) -> SummaryJobPublic:
    job = await _load_job(state, tenant, job_id)
    if JobStatus(job["status"]).is_final:
        raise Conflict(f"job {job_id} already {job['status']}", code="job_finished")
    async with state.engine.begin() as conn:
        if job["status"] == JobStatus.QUEUED.value:
            finished = await conn.run_sync(
                lambda sync_conn: finish_job(
                    sync_conn,
                    job_id,
                    JobStatus.CANCELED,
                    from_statuses=(JobStatus.QUEUED.value,),
                    error_code="canceled",
                    error_message="canceled by the client",
                )
            )
            if finished is not None:
                return job_to_public(finished.row)
        # Running: the worker checks this flag between chunks and stops there.
        await conn.execute(
            update(_JOBS)
            .where(
                _JOBS.c.id == job_id, _JOBS.c.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value))
            )
            .values(cancel_requested=True, updated_at=utcnow())
        )
    job = await _load_job(state, tenant, job_id)
    if JobStatus(job["status"]).is_final and job["status"] != JobStatus.CANCELED.value:
        raise Conflict(f"job {job_id} already {job['status']}", code="job_finished")
    return job_to_public(job)


@router.get("/summaries/{job_id}/deliveries")
async def list_deliveries(job_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    await _load_job(state, tenant, job_id)
    deliveries = deliveries_table
    attempts = attempts_table
    async with state.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(deliveries).where(deliveries.c.job_id == job_id).order_by(deliveries.c.id)
                )
            )
            .mappings()
            .all()
        )
        ids = [row["id"] for row in rows]
        attempt_rows = (
            (
                await conn.execute(
                    select(attempts).where(attempts.c.delivery_id.in_(ids)).order_by(attempts.c.id)
                )
            )
            .mappings()
            .all()
            if ids
            else []
        )
    by_delivery: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempt_rows:
        by_delivery.setdefault(attempt["delivery_id"], []).append(
            {
                "attempted_at": attempt["attempted_at"].isoformat(),
                "status_code": attempt["status_code"],
                "latency_ms": attempt["latency_ms"],
                "error": attempt["error"],
                "succeeded": attempt["succeeded"],
            }
        )
    return {
        "data": [
            {
                "id": row["id"],
                "event_id": row["event_id"],
                "event_type": row["event_type"],
                "channel": row["channel"],
                "target": row["target"],
                "status": row["status"],
                "attempts": by_delivery.get(row["id"], []),
                "next_attempt_at": row["next_attempt_at"].isoformat() if row["next_attempt_at"] else None,
                "created_at": row["created_at"].isoformat(),
            }
            for row in rows
        ]
    }


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver_delivery(delivery_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: redeliver(sync_conn, delivery_id, tenant=tenant))
    return {"id": delivery_id, "status": "pending"}
