"""The API's documentation: Swagger UI at /docs and ReDoc at /redoc, served from this package, and an
OpenAPI document that says what the API really does.

FastAPI's defaults load both UIs from a CDN (nothing shows on a machine without internet access),
describe a 422 body this API never sends, and know nothing of the bearer key. Here the document is
post-processed once: bearer auth declared per operation, each operation's own error statuses with
the ``{"error": {"code", "message"}}`` body, and an example for each request and answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gateway.errors import DEADLINE_RESPONSE, ERROR_RESPONSES, STATUS_FOR_CODE
from schema.api import (
    BatchCounts,
    BatchList,
    BatchPublic,
    DeliveryAttemptPublic,
    DeliveryList,
    DeliveryPublic,
    JobError,
    ModelVariantList,
    ModelVariantPublic,
    Progress,
    Redelivery,
    SummaryJobList,
    SummaryJobPublic,
)
from schema.models import JobStatus

ASSETS = Path(__file__).resolve().parent / "docs_assets"
STATIC_PREFIX = "/docs/static"
BEARER = "bearerAuth"

# Every /v1 operation may answer these: no valid key, the database away, a bug.
COMMON_ERRORS = (401, 500, 503)
# The other error statuses of each operation. An operation missing here keeps the generic list,
# and the documentation test fails until it is added.
ERRORS_BY_OPERATION: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/summaries"): (400, 409, 413, 422, 429, 504),
    ("get", "/v1/summaries"): (422,),
    ("get", "/v1/summaries/{job_id}"): (404,),
    ("post", "/v1/summaries/{job_id}/cancel"): (404, 409),
    ("get", "/v1/summaries/{job_id}/deliveries"): (404,),
    ("get", "/v1/summaries/{job_id}/events"): (404, 422),
    ("post", "/v1/deliveries/{delivery_id}/redeliver"): (404, 409),
    ("post", "/v1/batches"): (400, 413, 422, 429),
    ("get", "/v1/batches"): (422,),
    ("get", "/v1/batches/{batch_id}"): (404,),
    ("get", "/v1/batches/{batch_id}/results"): (404, 422),
    ("get", "/v1/batches/{batch_id}/events"): (404, 422),
    ("post", "/v1/batches/{batch_id}/cancel"): (404, 409),
    ("put", "/v1/webhook-endpoint"): (400, 413, 422),
    ("get", "/v1/webhook-endpoint"): (404,),
    ("delete", "/v1/webhook-endpoint"): (404,),
    ("post", "/v1/webhook-endpoint/test"): (404, 422),
    ("get", "/v1/deliveries/{delivery_id}"): (404,),
    ("get", "/v1/models"): (),
    ("delete", "/v1/cache"): (),
    ("get", "/v1/usage"): (422,),
}

_ERROR_DESCRIPTIONS: dict[int, str] = {
    **{int(status): str(entry["description"]) for status, entry in ERROR_RESPONSES.items()},
    **{int(status): str(entry["description"]) for status, entry in DEADLINE_RESPONSE.items()},
    500: "the server's own fault; the request may be retried",
}
_ERROR_EXAMPLES: dict[int, tuple[str, str]] = {
    400: ("invalid_json", "request body is not valid JSON: Expecting value"),
    401: ("unauthorized", "missing Authorization: Bearer <key> header"),
    404: ("not_found", "no summary job with id 0190f3a2-5b1c-7d2e-8f3a-4b5c6d7e8f90"),
    409: ("job_finished", "job 0190f3a2-5b1c-7d2e-8f3a-4b5c6d7e8f90 already succeeded"),
    413: ("payload_too_large", "text is larger than the limit of 2000000 bytes"),
    422: ("invalid_request", "text: field required"),
    429: ("rate_limited", "over the request rate of tenant acme (5 per second); retry in 1 s"),
    500: ("internal_error", "internal server error"),
    503: ("temporarily_unavailable", "the model is still loading; retry shortly"),
    504: ("deadline_exceeded", "no answer within 30.0 s; submit with mode=async"),
}

# -- examples ---------------------------------------------------------------------------------

_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
JOB_ID = "0190f3a2-5b1c-7d2e-8f3a-4b5c6d7e8f90"
BATCH_ID = "0190f3a2-6000-7d2e-8f3a-4b5c6d7e8f91"
DELIVERY_ID = "0190f3a2-7000-7d2e-8f3a-4b5c6d7e8f92"
_TEXT = "Kafka carries ids. The database keeps the text. Workers pull batches and store results."


def _job(**changes: Any) -> dict[str, Any]:
    job = SummaryJobPublic(
        id=JOB_ID,
        status=JobStatus.SUCCEEDED,
        route="async",
        created_at=_AT,
        started_at=_AT,
        finished_at=_AT,
        summary="Kafka carries ids. Workers pull batches and store results.",
        language="en",
        error=None,
        progress=Progress(done=1, total=1),
        model={"name": "all-MiniLM-L6-v2", "kind": "extractive", "quantization": "int8"},
        params={"max_words": 80},
        metadata={"ticket": "T-42"},
        attempts=1,
    )
    return SummaryJobPublic.model_validate({**job.model_dump(), **changes}).model_dump(mode="json")


def _batch(**changes: Any) -> dict[str, Any]:
    batch = BatchPublic(
        id=BATCH_ID,
        status="in_progress",
        counts=BatchCounts(total=3, queued=1, running=1, succeeded=1, failed=0, canceled=0),
        created_at=_AT,
        metadata={"team": "search"},
    )
    return BatchPublic.model_validate({**batch.model_dump(), **changes}).model_dump(mode="json")


_DELIVERY = DeliveryPublic(
    id=DELIVERY_ID,
    event_id="evt_0190f3a2-7000-7d2e-8f3a-4b5c6d7e8f93",
    event_type="summary.succeeded",
    channel="webhook",
    target="https://hooks.example.com/condense",
    status="exhausted",
    attempts=[
        DeliveryAttemptPublic(
            attempted_at=_AT.isoformat(), status_code=500, latency_ms=42.5, error="HTTP 500", succeeded=False
        )
    ],
    next_attempt_at=None,
    created_at=_AT.isoformat(),
)
_QUEUED = _job(
    status=JobStatus.QUEUED,
    started_at=None,
    finished_at=None,
    summary=None,
    language=None,
    model=None,
    attempts=0,
)
_CANCELED = _job(
    status=JobStatus.CANCELED,
    started_at=None,
    summary=None,
    language=None,
    model=None,
    attempts=0,
    error=JobError(code="canceled", message="canceled by the client"),
)
_ENDPOINT = {
    "url": "https://hooks.example.com/condense",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "created_at": _AT.isoformat(),
    "updated_at": _AT.isoformat(),
}

# (method, path) -> request example (or None), and the example of each success status.
EXAMPLES: dict[tuple[str, str], tuple[Any, dict[int, Any]]] = {
    ("post", "/v1/summaries"): (
        {"text": _TEXT, "params": {"max_words": 80}, "mode": "auto", "metadata": {"ticket": "T-42"}},
        {200: _job(route="sync"), 202: _QUEUED},
    ),
    ("get", "/v1/summaries"): (
        None,
        {200: SummaryJobList.model_validate({"data": [_job()], "next_cursor": None}).model_dump(mode="json")},
    ),
    ("get", "/v1/summaries/{job_id}"): (None, {200: _job()}),
    ("post", "/v1/summaries/{job_id}/cancel"): (None, {200: _CANCELED}),
    ("get", "/v1/summaries/{job_id}/deliveries"): (
        None,
        {200: DeliveryList(data=[_DELIVERY]).model_dump(mode="json")},
    ),
    ("post", "/v1/deliveries/{delivery_id}/redeliver"): (
        None,
        {202: Redelivery(id=DELIVERY_ID, status="pending").model_dump(mode="json")},
    ),
    ("post", "/v1/batches"): (
        {
            "files": ["<contents of docs.zip>"],
            "params": '{"max_words": 80}',
            "metadata": '{"team": "search"}',
        },
        {
            202: _batch(
                counts={"total": 3, "queued": 3, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0}
            )
        },
    ),
    ("get", "/v1/batches"): (
        None,
        {200: BatchList.model_validate({"data": [_batch()], "next_cursor": None}).model_dump(mode="json")},
    ),
    ("get", "/v1/batches/{batch_id}"): (None, {200: _batch()}),
    ("get", "/v1/batches/{batch_id}/results"): (
        None,
        {
            200: '{"custom_id": "a.txt", "job_id": "'
            + JOB_ID
            + '", "status": "succeeded", "summary": "Kafka carries ids.", "error": null}\n'
        },
    ),
    ("post", "/v1/batches/{batch_id}/cancel"): (
        None,
        {200: _batch(status="canceled", finished_at=_AT.isoformat())},
    ),
    ("put", "/v1/webhook-endpoint"): ({"url": "https://hooks.example.com/condense"}, {200: _ENDPOINT}),
    ("get", "/v1/webhook-endpoint"): (None, {200: _ENDPOINT}),
    ("post", "/v1/webhook-endpoint/test"): (
        None,
        {
            202: _DELIVERY.model_copy(
                update={"event_type": "webhook.test", "status": "pending", "attempts": []}
            ).model_dump(mode="json")
        },
    ),
    ("get", "/v1/deliveries/{delivery_id}"): (None, {200: _DELIVERY.model_dump(mode="json")}),
    ("delete", "/v1/cache"): (None, {200: {"deleted": 42}}),
    ("get", "/v1/usage"): (
        None,
        {
            200: {
                "tenant": "acme",
                "from": "2026-01-01",
                "to": "2026-01-31",
                "totals": {
                    "jobs": 120,
                    "cached_jobs": 30,
                    "input_tokens": 250_000,
                    "output_units": 9_600,
                    "chunks": 140,
                    "engine_s": 61.5,
                },
            }
        },
    ),
    ("get", "/v1/models"): (
        None,
        {
            200: ModelVariantList(
                data=[
                    ModelVariantPublic(
                        name="default",
                        weight=1.0,
                        share=1.0,
                        status="ready",
                        loaded=True,
                        kind="extractive",
                        model="all-MiniLM-L6-v2",
                        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                        backend="onnx-int8",
                        quantization="static-int8-qdq-u8s8-per-channel-minmax-linear-float-residual",
                        device="cpu",
                        engine_version="condense-0.1.0/onnx-int8/static-int8-qdq-u8s8-per-channel-minmax-linear-float-residual",
                    )
                ]
            ).model_dump(mode="json")
        },
    ),
}
_PATH_EXAMPLES = {"job_id": JOB_ID, "batch_id": BATCH_ID, "delivery_id": DELIVERY_ID}


def _error_response(status: int) -> dict[str, Any]:
    code, message = _ERROR_EXAMPLES[status]
    assert STATUS_FOR_CODE.get(code, 500) == status  # noqa: S101 - the examples follow the one table
    response: dict[str, Any] = {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"},
                "example": {"error": {"code": code, "message": message}},
            }
        },
    }
    if status == 503:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer"},
            }
        }
    return response


def _set_example(content: dict[str, Any] | None, example: Any) -> None:
    for media in (content or {}).values():
        if "example" not in media:
            media["example"] = example


def _accurate_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    parameters = [p for p in operation.get("parameters", []) if p["name"].lower() != "authorization"]
    for parameter in parameters:
        if parameter["in"] == "path" and parameter["name"] in _PATH_EXAMPLES:
            parameter["example"] = _PATH_EXAMPLES[parameter["name"]]
    if parameters:
        operation["parameters"] = parameters
    else:
        operation.pop("parameters", None)
    operation["security"] = [{BEARER: []}]
    responses: dict[str, Any] = operation["responses"]
    extra = ERRORS_BY_OPERATION.get((method, path))
    if extra is not None:
        statuses = set(COMMON_ERRORS) | set(extra)
        for key in [
            key for key in responses if key.isdigit() and int(key) >= 400 and int(key) not in statuses
        ]:
            del responses[key]
        for status in sorted(statuses):
            responses[str(status)] = _error_response(status)
    request, answers = EXAMPLES.get((method, path), (None, {}))
    if request is not None and "requestBody" in operation:
        _set_example(operation["requestBody"].get("content"), request)
    for status, example in answers.items():
        if str(status) in responses:
            _set_example(responses[str(status)].get("content"), example)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `condense keys create --tenant NAME`. A gateway on loopback "
        "with no key created yet serves everyone as the tenant `default`.",
    }
    for path, operations in document["paths"].items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                _accurate_operation(method, path, operation)
    # Request validation errors answer the ErrorBody above, never FastAPI's own shape.
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = document
    return document


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets; the app must be made with ``docs_url=redoc_url=None``."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=ASSETS), name="docs-static")
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # No badge asking the public validator service about this document.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url=f"{STATIC_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PREFIX}/favicon-32x32.png",
            with_google_fonts=False,
        )
