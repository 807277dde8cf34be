"""The /v1 API: submit, poll, list and cancel summary jobs; inspect and replay deliveries."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.exc import IntegrityError

from common.metrics import JOB_FAILURES, JOB_LATENCY, JOBS, SUBMISSIONS, SUMMARY_WORDS
from common.pii import summary_for
from gateway import result_cache
from gateway.deps import StateDep, TenantDep
from gateway.endpoints import delivery_public
from gateway.errors import DEADLINE_RESPONSE, PayloadTooLargeError
from gateway.ids import DeliveryId, JobId
from gateway.pagination import decode_cursor, encode_cursor
from gateway.privacy import mode_for, screen_async
from gateway.state import GatewayState, VariantRuntime
from gateway.webhooks import resolve_webhook
from schema.api import (
    DeliveryList,
    Redelivery,
    SummaryJobCreate,
    SummaryJobList,
    SummaryJobPublic,
    job_to_public,
)
from schema.models import JobStatus, Route, new_id, utcnow
from schema.storable import json_size
from schema.store import cache, deliveries, jobs, usage
from schema.store.cache import CacheEntry
from schema.store.errors import IdempotencyConflictError
from schema.store.records import JobRecord
from summarizer import Summarizer, SummarizerError, SummaryResult

router = APIRouter(prefix="/v1", tags=["summaries"])

_MAX_PAGE = 100
# Above this many characters a text is long whatever the tokenizer says: counting would only
# cost time on the event loop.
_CHARS_PER_TOKEN_CEILING = 20


def _request_hash(body: SummaryJobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _choose_route(
    state: GatewayState, variant: VariantRuntime, summarizer: Summarizer | None, body: SummaryJobCreate
) -> tuple[Route, int]:
    """Pick sync or async by token count; returns the route and the tokens counted (0 if skipped).

    Without the variant's model (still loading, or failed) auto goes async, since a worker's model
    will run it, and sync is a 503.
    """
    gateway = state.settings.gateway
    if body.mode == "async":
        return Route.ASYNC, 0
    if summarizer is None:
        if body.mode == "sync":
            raise variant.unavailable()
        return Route.ASYNC, 0
    limit = gateway.sync_max_tokens if body.mode == "sync" else gateway.sync_threshold_tokens
    tokens = 0
    if len(body.text) > limit * _CHARS_PER_TOKEN_CEILING:
        too_long = True
    else:
        tokens = summarizer.count_tokens(body.text)
        too_long = tokens > limit
    if body.mode == "sync":
        if too_long:
            raise PayloadTooLargeError(
                f"text is longer than the sync limit of {gateway.sync_max_tokens} tokens; "
                'submit it with "mode": "async" (or "auto") and poll the job'
            )
        return Route.SYNC, tokens
    return (Route.ASYNC if too_long else Route.SYNC), tokens


def _replay(existing: JobRecord, request_hash: str) -> Response:
    if existing.request_hash != request_hash:
        raise IdempotencyConflictError("this Idempotency-Key was already used with a different request body")
    return _job_response(existing)


def _job_response(job: JobRecord) -> Response:
    public = job_to_public(job)
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


def _insert_with_entry(
    conn: Any, job: JobRecord, entry: CacheEntry | None, *, topic_for: dict[str, str]
) -> bool:
    jobs.insert_jobs(conn, [job], topic_for=topic_for)
    return entry is not None and bool(cache.put(conn, [entry]))


async def _store(state: GatewayState, job: JobRecord, entry: CacheEntry | None = None) -> bool:
    """Store the job and its cache entry; True when the entry was new (not another job's key)."""
    needs_event = job.status != JobStatus.QUEUED.value and bool(job.webhook_url or job.email)
    if job.idempotency_key is None and not needs_event:
        return await state.committer.insert(job, entry)
    # Rare paths (idempotent or notifying submits) take their own transaction so that a
    # uniqueness conflict or the event rows never touch the neighbours of a group commit.
    return await state.write(_insert_with_entry, job, entry, topic_for=state.topic_for)


@router.post(
    "/summaries",
    status_code=202,
    response_model=SummaryJobPublic,
    responses={
        200: {"model": SummaryJobPublic, "description": "answered at once (short text)"},
        202: {"description": "queued"},
        **DEADLINE_RESPONSE,
    },
)
async def create_summary(
    body: SummaryJobCreate,
    state: StateDep,
    tenant: TenantDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> Response:
    settings = state.settings
    if state.quotas is not None:
        await state.quotas.admit(tenant)
    if len(body.text.encode()) > settings.gateway.max_text_bytes:
        raise PayloadTooLargeError(
            f"text is larger than the limit of {settings.gateway.max_text_bytes} bytes"
        )
    if json_size(body.metadata) > settings.gateway.max_metadata_bytes:
        raise PayloadTooLargeError(
            f"metadata is larger than the limit of {settings.gateway.max_metadata_bytes} bytes as JSON"
        )
    # Only an idempotent replay compares bodies; hashing megabytes for every submit would not pay.
    request_hash = _request_hash(body) if idempotency_key is not None else None
    pii_mode = await mode_for(state, tenant, body.pii)
    # Before anything else holds the text: from here on only the screened text exists.
    screened = await screen_async(body.text, pii_mode)
    if screened is not body.text:
        body = body.model_copy(update={"text": screened})
    if idempotency_key is not None and request_hash is not None:
        existing = await state.read(jobs.find_by_idempotency_key, tenant, idempotency_key)
        if existing is not None:
            return _replay(existing, request_hash)
    job_id = new_id()
    variant, own_params = state.route(job_id, body.params)
    # Read once: the loader may finish between two reads, and this request must use one view of it.
    summarizer, batcher = variant.summarizer, variant.batcher
    model = summarizer if batcher is not None else None
    engine_params, cache_options = cache.split_params(own_params)
    params = (
        model.validate_params(engine_params) if model is not None else variant.validate_params(engine_params)
    )
    params_dump = params.model_dump(exclude_none=True)
    webhook = await resolve_webhook(
        state,
        tenant,
        body.webhook.url if body.webhook else None,
        body.webhook.secret if body.webhook else None,
    )
    hit = await result_cache.lookup(
        state, model, tenant=tenant, text=body.text, params=params_dump, options=cache_options
    )
    # A hit is answered at once whatever the length; "async" keeps its 202 and Location.
    route, tokens = (
        ((Route.ASYNC if body.mode == "async" else Route.SYNC), 0)
        if hit is not None
        else _choose_route(state, variant, model, body)
    )
    if hit is None and route is Route.ASYNC and state.quotas is not None:
        await state.quotas.admit_queue(tenant, 1)
    columns: dict[str, Any] = {
        "id": job_id,
        "variant": variant.name,
        "route": route.value,
        "input_tokens": tokens,
        "params": {**params_dump, **cache.options_params(cache_options)},
        "metadata": body.metadata,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "webhook_url": webhook[0],
        "webhook_secret": webhook[1],
        "email": str(body.email) if body.email else None,
        "pii_mode": pii_mode,
    }
    entry: CacheEntry | None = None
    result: SummaryResult | None = None
    if hit is not None:
        columns.update(cache.hit_columns(hit))
    elif route is Route.SYNC:
        assert batcher is not None  # noqa: S101 - _choose_route picks sync only with a running batcher
        gateway = settings.gateway
        timeout_s = min(body.timeout_s or gateway.request_timeout_s, gateway.max_request_timeout_s)
        started = utcnow()
        began = time.perf_counter()
        try:
            result = await batcher.submit((body.text, params), timeout_s=timeout_s)
        except SummarizerError as exc:
            # The engine refused this document: nothing is stored, yet the variant's failure rate counts it.
            JOB_FAILURES.labels(code=exc.code, variant=variant.name).inc()
            raise
        columns.update(
            status=JobStatus.SUCCEEDED.value,
            summary=summary_for(result.summary, pii_mode),
            language=result.language,
            model=result.model.as_dict(),
            timings={**result.timings, "request_s": time.perf_counter() - began},
            input_tokens=result.input_tokens or tokens,
            progress_done=result.chunks,
            progress_total=result.chunks,
            attempts=1,
            started_at=started,
            finished_at=utcnow(),
        )
        JOB_LATENCY.labels(variant=variant.name, route="sync", status="succeeded").observe(
            time.perf_counter() - began
        )
        SUMMARY_WORDS.labels(variant=variant.name).observe(len(result.summary.split()))
    job = jobs.new_job(tenant=tenant, text=body.text, **columns)
    if result is not None and result_cache.enabled(state, cache_options):
        entry = result_cache.entry_for(state, job, body.text, params_dump, result)
    try:
        if hit is not None:
            await state.write(result_cache.insert_hit, job, hit.entry.key, topic_for=state.topic_for)
        elif await _store(state, job, entry):
            await result_cache.remember(state, entry)
    except IntegrityError:
        if idempotency_key is None or request_hash is None:
            raise
        existing = await state.read(jobs.find_by_idempotency_key, tenant, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, request_hash)
    SUBMISSIONS.labels(route=job.route).inc()
    JOBS.labels(status=job.status, route=job.route).inc()
    if job.is_final:
        usage.count(job, usage.of_job(job))
    return _job_response(job)


@router.get("/summaries/{job_id}", response_model=SummaryJobPublic)
async def get_summary(job_id: JobId, state: StateDep, tenant: TenantDep) -> SummaryJobPublic:
    return job_to_public(await state.read(jobs.get, job_id, tenant=tenant))


@router.get("/summaries", response_model=SummaryJobList)
async def list_summaries(
    state: StateDep,
    tenant: TenantDep,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SummaryJobList:
    found = await state.read(
        jobs.list_page,
        tenant,
        status=status.value if status is not None else None,
        before_id=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = [job_to_public(job) for job in found[:limit]]
    next_cursor = encode_cursor(page[-1].id) if len(found) > limit and page else None
    return SummaryJobList(data=page, next_cursor=next_cursor)


@router.post("/summaries/{job_id}/cancel", response_model=SummaryJobPublic)
async def cancel_summary(job_id: JobId, state: StateDep, tenant: TenantDep) -> SummaryJobPublic:
    return job_to_public(await state.write(jobs.cancel, job_id, tenant=tenant))


@router.get("/summaries/{job_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(job_id: JobId, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    await state.read(jobs.get, job_id, tenant=tenant)
    found = await state.read(deliveries.list_for_job, job_id)
    return {"data": [delivery_public(delivery, attempts) for delivery, attempts in found]}


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, response_model=Redelivery)
async def redeliver_delivery(delivery_id: DeliveryId, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    await state.write(deliveries.redeliver, delivery_id, tenant=tenant)
    return {"id": delivery_id, "status": "pending"}
