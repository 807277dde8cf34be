"""Batch uploads: many documents in one request, progress and partial results while they run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import Connection, insert, select, update

from gateway.app import GatewayState
from gateway.deps import StateDep, TenantDep
from gateway.errors import Conflict, GatewayRetryableError, InvalidRequest, NotFound
from gateway.routes import decode_cursor, encode_cursor, resolve_webhook
from gateway.uploads import Document, parse_upload
from gateway.uploads import UploadFile as UploadedFile
from schema.api import BatchCounts, BatchPublic, WebhookTarget
from schema.jobs import OPEN_STATUSES, BatchStatus, batch_counts, complete_batch_if_done, new_job_row
from schema.models import (
    JobStatus,
    Lane,
    batches_table,
    jobs_table,
    new_id,
    outbox_table,
    utcnow,
)

router = APIRouter(prefix="/v1", tags=["batches"])

_JOBS = jobs_table
_BATCHES = batches_table
_OUTBOX = outbox_table
_RESULTS_PAGE = 500
_EMAIL = TypeAdapter(EmailStr)


def _json_field(name: str, raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{name}: not valid JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name}: must be a JSON object")
    return value


def _batch_public(row: Any, counts: dict[str, int]) -> BatchPublic:
    return BatchPublic(
        id=row["id"],
        status=row["status"],
        counts=BatchCounts(**counts),
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        metadata=row["metadata"] or {},
    )


def _insert_batch(conn: Connection, batch: dict[str, Any], jobs: list[dict[str, Any]], topic: str) -> None:
    conn.execute(insert(_BATCHES), [batch])
    for start in range(0, len(jobs), 1_000):
        chunk = jobs[start : start + 1_000]
        conn.execute(insert(_JOBS), chunk)
        conn.execute(insert(_OUTBOX), [{"job_id": job["id"], "topic": topic} for job in chunk])


@router.post("/batches", status_code=202, response_model=BatchPublic)
async def create_batch(
    state: StateDep,
    tenant: TenantDep,
    files: Annotated[list[UploadFile], File(description="documents, a .zip of them, or a .jsonl")],
    params: Annotated[str | None, Form(description="JSON object of parameters for every document")] = None,
    webhook_url: Annotated[str | None, Form()] = None,
    webhook_secret: Annotated[str | None, Form()] = None,
    email: Annotated[str | None, Form()] = None,
    metadata: Annotated[str | None, Form(description="JSON object kept with the batch")] = None,
) -> JSONResponse:
    settings = state.settings
    if state.summarizer is None:
        raise GatewayRetryableError("the model is still loading; retry shortly")
    shared_params = _json_field("params", params)
    batch_metadata = _json_field("metadata", metadata)
    if webhook_url is not None:
        try:
            WebhookTarget(url=webhook_url, secret=webhook_secret)
        except ValidationError as exc:
            raise InvalidRequest(f"webhook: {exc.errors()[0]['msg']}") from exc
    webhook_url, webhook_secret = await resolve_webhook(state, tenant, webhook_url, webhook_secret)
    if email is not None:
        try:
            _EMAIL.validate_python(email)
        except ValidationError as exc:
            raise InvalidRequest(f"email: {exc.errors()[0]['msg']}") from exc
    uploads = [
        UploadedFile(filename=upload.filename or "upload", content=await upload.read()) for upload in files
    ]
    documents: list[Document] = await asyncio.to_thread(parse_upload, uploads, settings.batches)
    summarizer = state.summarizer
    validated = []
    for document in documents:
        try:
            merged = summarizer.validate_params({**shared_params, **document.params})
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            raise InvalidRequest(f"{document.custom_id}: {message}", code="invalid_params") from exc
        validated.append(merged.model_dump(exclude_none=True))

    now = utcnow()
    batch_id = new_id()
    batch = {
        "id": batch_id,
        "tenant": tenant,
        "status": BatchStatus.IN_PROGRESS,
        "total": len(documents),
        "params": shared_params,
        "metadata": batch_metadata,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "email": email,
        "cancel_requested": False,
        "created_at": now,
        "finished_at": None,
    }
    jobs = [
        new_job_row(
            tenant=tenant,
            text=document.text,
            lane=Lane.BULK.value,
            params=job_params,
            batch_id=batch_id,
            custom_id=document.custom_id,
            created_at=now,
            updated_at=now,
        )
        for document, job_params in zip(documents, validated, strict=True)
    ]
    async with state.engine.begin() as conn:
        await conn.run_sync(
            lambda sync_conn: _insert_batch(sync_conn, batch, jobs, settings.kafka.bulk_topic)
        )
    counts = {status.value: 0 for status in JobStatus} | {"queued": len(jobs), "total": len(jobs)}
    public = _batch_public(batch, counts)
    return JSONResponse(
        public.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/batches/{batch_id}"}
    )


async def _load_batch(
    state: GatewayState, tenant: str, batch_id: str
) -> tuple[dict[str, Any], dict[str, int]]:
    async with state.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(_BATCHES).where(_BATCHES.c.id == batch_id, _BATCHES.c.tenant == tenant)
                )
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise NotFound(f"no batch with id {batch_id}")
        counts = await conn.run_sync(lambda sync_conn: batch_counts(sync_conn, batch_id))
    return dict(row), counts


@router.get("/batches/{batch_id}", response_model=BatchPublic)
async def get_batch(batch_id: str, state: StateDep, tenant: TenantDep) -> BatchPublic:
    row, counts = await _load_batch(state, tenant, batch_id)
    return _batch_public(row, counts)


@router.get("/batches")
async def list_batches(
    state: StateDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    query = select(_BATCHES).where(_BATCHES.c.tenant == tenant)
    if cursor:
        query = query.where(_BATCHES.c.id < decode_cursor(cursor))
    query = query.order_by(_BATCHES.c.id.desc()).limit(limit + 1)
    async with state.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
        page = []
        for row in rows[:limit]:
            counts = await conn.run_sync(partial(batch_counts, batch_id=row["id"]))
            page.append(_batch_public(row, counts).model_dump(mode="json"))
    next_cursor = encode_cursor(page[-1]["id"]) if len(rows) > limit and page else None
    return {"data": page, "next_cursor": next_cursor}


@router.get("/batches/{batch_id}/results")
async def batch_results(batch_id: str, state: StateDep, tenant: TenantDep) -> StreamingResponse:
    await _load_batch(state, tenant, batch_id)

    async def lines() -> AsyncIterator[bytes]:
        after = ""
        while True:
            async with state.engine.connect() as conn:
                rows = (
                    (
                        await conn.execute(
                            select(
                                _JOBS.c.id,
                                _JOBS.c.custom_id,
                                _JOBS.c.status,
                                _JOBS.c.summary,
                                _JOBS.c.error_code,
                                _JOBS.c.error_message,
                            )
                            .where(
                                _JOBS.c.batch_id == batch_id,
                                _JOBS.c.id > after,
                                _JOBS.c.status.not_in(OPEN_STATUSES),
                            )
                            .order_by(_JOBS.c.id)
                            .limit(_RESULTS_PAGE)
                        )
                    )
                    .mappings()
                    .all()
                )
            if not rows:
                return
            chunk = []
            for row in rows:
                error = (
                    {"code": row["error_code"], "message": row["error_message"] or ""}
                    if row["error_code"]
                    else None
                )
                line = {
                    "custom_id": row["custom_id"],
                    "job_id": row["id"],
                    "status": row["status"],
                    "summary": row["summary"],
                    "error": error,
                }
                chunk.append(json.dumps(line, ensure_ascii=False))
            yield ("\n".join(chunk) + "\n").encode()
            after = rows[-1]["id"]

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/batches/{batch_id}/cancel", response_model=BatchPublic)
async def cancel_batch(batch_id: str, state: StateDep, tenant: TenantDep) -> BatchPublic:
    row, _counts = await _load_batch(state, tenant, batch_id)
    if row["status"] != BatchStatus.IN_PROGRESS:
        raise Conflict(f"batch {batch_id} already {row['status']}", code="batch_finished")

    def cancel(conn: Connection) -> None:
        now = utcnow()
        conn.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id).values(cancel_requested=True))
        # Queued documents end now; running ones finish, as the batch APIs users know do it.
        conn.execute(
            update(_JOBS)
            .where(_JOBS.c.batch_id == batch_id, _JOBS.c.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.CANCELED.value,
                error_code="canceled",
                error_message="the batch was canceled",
                finished_at=now,
                updated_at=now,
            )
        )
        complete_batch_if_done(conn, batch_id)

    async with state.engine.begin() as conn:
        await conn.run_sync(cancel)
    row, counts = await _load_batch(state, tenant, batch_id)
    return _batch_public(row, counts)
