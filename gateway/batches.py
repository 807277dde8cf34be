"""Batch uploads: many documents in one request, progress and partial results while they run."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import EmailStr, TypeAdapter, ValidationError

from common.pii import PII_MODES, PiiMode
from gateway.deps import StateDep, TenantDep
from gateway.errors import InvalidRequestError, PayloadTooLargeError, PiiRejectedError, UnknownModelError
from gateway.ids import BatchId
from gateway.multipart import UploadForm, parse_upload_form
from gateway.pagination import decode_cursor, encode_cursor
from gateway.privacy import mode_for, screen
from gateway.uploads import Document, parse_json, parse_upload
from gateway.uploads import UploadFile as UploadedFile
from gateway.webhooks import resolve_webhook
from schema.api import BatchCounts, BatchList, BatchPublic, WebhookTarget
from schema.models import Lane, new_id
from schema.settings import BatchUploadSettings, Settings
from schema.storable import json_problem, json_size
from schema.store import batches, cache, jobs
from schema.store.batches import BatchResult
from schema.store.records import BatchCounts as StoredCounts
from schema.store.records import BatchRecord
from summarizer import SummarizerError

router = APIRouter(prefix="/v1", tags=["batches"])

_RESULTS_PAGE = 500
_EMAIL = TypeAdapter(EmailStr)


def _json_field(name: str, raw: str | None, *, max_bytes: int) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = parse_json(raw)
    except ValueError as exc:
        raise InvalidRequestError(f"{name}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{name}: must be a JSON object")
    problem = json_problem(value)
    if problem:
        raise InvalidRequestError(f"{name}: {problem}")
    if json_size(value) > max_bytes:
        raise PayloadTooLargeError(f"{name} is larger than the limit of {max_bytes} bytes as JSON")
    return value


def batch_public(batch: BatchRecord, counts: StoredCounts) -> BatchPublic:
    return BatchPublic(
        id=batch.id,
        status=batch.status,  # type: ignore[arg-type]
        counts=BatchCounts(**counts.as_dict()),
        created_at=batch.created_at,
        finished_at=batch.finished_at,
        metadata=batch.metadata or {},
    )


_FILES_FIELD = "files"
_TEXT_FIELDS = frozenset({"params", "webhook_url", "webhook_secret", "email", "metadata", "pii"})
# What the form looks like, for the OpenAPI document: the route reads the body itself (see
# gateway.multipart), so FastAPI cannot derive it from parameters.
_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [_FILES_FIELD],
    "properties": {
        _FILES_FIELD: {
            "type": "array",
            "items": {"type": "string", "contentMediaType": "application/octet-stream"},
            "description": "documents (.txt, .md, .rst, .html, .pdf), a .zip of them, or a .jsonl",
        },
        "params": {"type": "string", "description": "JSON object of parameters for every document"},
        "webhook_url": {"type": "string"},
        "webhook_secret": {"type": "string", "description": "whsec_<base64>; needs webhook_url"},
        "email": {"type": "string"},
        "metadata": {"type": "string", "description": "JSON object kept with the batch"},
        "pii": {"type": "string", "enum": ["off", "mask_summary", "mask_stored", "reject"]},
    },
}


def _field_limit(settings: Settings) -> int:
    # params and metadata are bounded as compact JSON; leave room for the whitespace of pretty JSON.
    return 64 * 1024 + 4 * settings.gateway.max_metadata_bytes


def _screen_all(documents: list[Document], mode: PiiMode) -> list[str]:
    texts = []
    for document in documents:
        try:
            texts.append(screen(document.text, mode))
        except PiiRejectedError as exc:
            raise PiiRejectedError(f"{document.custom_id}: {exc.message}") from exc
    return texts


def _read_documents(form: UploadForm, limits: BatchUploadSettings) -> list[Document]:
    uploads = [UploadedFile(filename=part.filename, content=form.spool.read(part)) for part in form.files]
    return parse_upload(uploads, limits)


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchPublic,
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _UPLOAD_SCHEMA}}}
    },
)
async def create_batch(request: Request, state: StateDep, tenant: TenantDep) -> JSONResponse:
    settings = state.settings
    if state.quotas is not None:
        await state.quotas.admit(tenant)
    # Read here, after the key was checked, rather than by FastAPI before it: an unauthenticated
    # upload is refused before its body is read at all.
    form = await parse_upload_form(
        request,
        file_field=_FILES_FIELD,
        text_fields=_TEXT_FIELDS,
        max_files=settings.batches.max_files,
        max_field_bytes=_field_limit(settings),
    )
    try:
        if not form.files:
            raise InvalidRequestError(f"{_FILES_FIELD}: field required")
        fields = form.fields
        webhook_url, webhook_secret, email = (
            fields.get("webhook_url"),
            fields.get("webhook_secret"),
            fields.get("email"),
        )
        max_bytes = settings.gateway.max_metadata_bytes
        shared_params = _json_field("params", fields.get("params"), max_bytes=max_bytes)
        batch_metadata = _json_field("metadata", fields.get("metadata"), max_bytes=max_bytes)
        if webhook_url is None and webhook_secret is not None:
            # As in a job's "webhook" object, a secret goes with a URL; alone it would be dropped unseen.
            raise InvalidRequestError("webhook_secret: given without webhook_url")
        if webhook_url is not None:
            try:
                WebhookTarget(url=webhook_url, secret=webhook_secret)
            except ValidationError as exc:
                raise InvalidRequestError(f"webhook: {exc.errors()[0]['msg']}") from exc
        webhook_url, webhook_secret = await resolve_webhook(state, tenant, webhook_url, webhook_secret)
        requested_pii = fields.get("pii")
        if requested_pii is not None and requested_pii not in PII_MODES:
            raise InvalidRequestError(f"pii: must be one of {', '.join(PII_MODES)}")
        pii_mode = await mode_for(state, tenant, cast(PiiMode | None, requested_pii))
        if email is not None:
            try:
                _EMAIL.validate_python(email)
            except ValidationError as exc:
                raise InvalidRequestError(f"email: {exc.errors()[0]['msg']}") from exc
        documents: list[Document] = await asyncio.to_thread(_read_documents, form, settings.batches)
    finally:
        form.spool.close()
    # params.model on the batch (or on a JSONL line) picks the variant; without it each document
    # is routed by its own id, so a batch spreads over the variants like single jobs.
    routed: list[tuple[str, str, dict[str, Any]]] = []
    for document in documents:
        job_id = new_id()
        try:
            variant, own_params = state.route(job_id, {**shared_params, **document.params})
            # Cache options (per batch or per document) stay with the job; the engine never sees them.
            engine_params, options = cache.split_params(own_params)
            # The settings' rules while the model loads: uploads are queued work and need no model here.
            merged = variant.validate_params(engine_params)
        except (SummarizerError, UnknownModelError) as exc:
            raise InvalidRequestError(f"{document.custom_id}: {exc.message}", code=exc.code) from exc
        routed.append(
            (job_id, variant.name, {**merged.model_dump(exclude_none=True), **cache.options_params(options)})
        )
    if pii_mode in {"reject", "mask_stored"}:
        # Off the event loop: thousands of documents take a while to scan.
        texts = await asyncio.to_thread(_screen_all, documents, pii_mode)
        documents = [replace(d, text=t) for d, t in zip(documents, texts, strict=True)]

    if state.quotas is not None:
        # All or nothing: an upload that would pass the queued quota is refused whole.
        await state.quotas.admit_queue(tenant, len(documents))
    batch = batches.new_batch(
        tenant=tenant,
        total=len(documents),
        params=shared_params,
        metadata=batch_metadata,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        email=email,
    )
    new_jobs = [
        jobs.new_job(
            id=job_id,
            tenant=tenant,
            text=document.text,
            lane=Lane.BULK.value,
            params=job_params,
            variant=variant_name,
            batch_id=batch.id,
            custom_id=document.custom_id,
            pii_mode=pii_mode,
            created_at=batch.created_at,
            updated_at=batch.created_at,
        )
        for document, (job_id, variant_name, job_params) in zip(documents, routed, strict=True)
    ]
    await state.write(batches.create, batch, new_jobs, topic_for=state.topic_for)
    public = batch_public(batch, StoredCounts(queued=len(new_jobs)))
    return JSONResponse(
        public.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/batches/{batch.id}"}
    )


def _get_with_counts(conn: Any, batch_id: str, tenant: str) -> tuple[BatchRecord, StoredCounts]:
    batch = batches.get(conn, batch_id, tenant=tenant)
    return batch, batches.counts(conn, batch_id)


@router.get("/batches/{batch_id}", response_model=BatchPublic)
async def get_batch(batch_id: BatchId, state: StateDep, tenant: TenantDep) -> BatchPublic:
    return batch_public(*await state.read(_get_with_counts, batch_id, tenant))


@router.get("/batches", response_model=BatchList)
async def list_batches(
    state: StateDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    found = await state.read(
        batches.list_page, tenant, before_id=decode_cursor(cursor) if cursor else None, limit=limit + 1
    )
    page = [batch_public(batch, counts).model_dump(mode="json") for batch, counts in found[:limit]]
    next_cursor = encode_cursor(page[-1]["id"]) if len(found) > limit and page else None
    return {"data": page, "next_cursor": next_cursor}


_CSV_COLUMNS = (
    "custom_id",
    "job_id",
    "status",
    "summary",
    "variant",
    "adapter",
    "error_code",
    "error_message",
)
# A cell that a spreadsheet would run as a formula (CWE-1236) gets a leading quote, as OWASP advises.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _result_json(result: BatchResult) -> str:
    return json.dumps(
        {
            "custom_id": result.custom_id,
            "job_id": result.job_id,
            "status": result.status,
            "summary": result.summary,
            "variant": result.variant,
            "adapter": result.adapter,
            "error": (
                {"code": result.error_code, "message": result.error_message or ""}
                if result.error_code
                else None
            ),
            "usage": result.usage,
        },
        ensure_ascii=False,
    )


def _csv_cell(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_rows(rows: list[tuple[str | None, ...]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([_csv_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode()


@router.get(
    "/batches/{batch_id}/results",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "one record per finished document, in upload order: JSON lines, or CSV with a header",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def batch_results(
    batch_id: BatchId,
    state: StateDep,
    tenant: TenantDep,
    format: Annotated[Literal["jsonl", "csv"], Query(description="jsonl (default) or csv")] = "jsonl",
) -> StreamingResponse:
    await state.read(batches.get, batch_id, tenant=tenant)
    as_csv = format == "csv"

    async def lines() -> AsyncIterator[bytes]:
        if as_csv:
            # A UTF-8 BOM so that spreadsheets do not read the summaries as Latin-1.
            yield "\ufeff".encode() + _csv_rows([_CSV_COLUMNS])
        after = ""
        while True:
            results = await state.read(batches.results_page, batch_id, after_id=after, limit=_RESULTS_PAGE)
            if not results:
                return
            if as_csv:
                yield _csv_rows(
                    [
                        (
                            r.custom_id,
                            r.job_id,
                            r.status,
                            r.summary,
                            r.variant,
                            r.adapter,
                            r.error_code,
                            r.error_message,
                        )
                        for r in results
                    ]
                )
            else:
                yield ("\n".join(_result_json(result) for result in results) + "\n").encode()
            after = results[-1].job_id

    if as_csv:
        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
        )
    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/batches/{batch_id}/cancel", response_model=BatchPublic)
async def cancel_batch(batch_id: BatchId, state: StateDep, tenant: TenantDep) -> BatchPublic:
    await state.write(batches.cancel, batch_id, tenant=tenant)
    return batch_public(*await state.read(_get_with_counts, batch_id, tenant))
