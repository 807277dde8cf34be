"""Gateway errors, and the one table that turns an error code into an HTTP status.

Errors from every package reach the client through here: the engine's, the store's, the upload
parser's, the URL policy's. None of them carries an HTTP status; ``STATUS_FOR_CODE`` decides, so
the mapping is in one place and a new code without a row shows up as a 500 in tests, not in use.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import CondenseError
from gateway.microbatch import QueueFullError

log = logging.getLogger(__name__)


class GatewayError(CondenseError):
    """Base of the gateway's own errors."""


class NotFoundError(GatewayError):
    code = "not_found"


class UnauthorizedError(GatewayError):
    code = "unauthorized"


class PayloadTooLargeError(GatewayError):
    code = "payload_too_large"


class InvalidRequestError(GatewayError):
    code = "invalid_request"


# What a 503 suggests when its error knows no better; every 503 says some Retry-After.
DEFAULT_RETRY_AFTER_S = 1.0


class UnavailableError(GatewayError):
    """Not now, but soon (the model is loading, the database is away): 503 with Retry-After."""

    code = "temporarily_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownModelError(GatewayError):
    """``params.model`` names no configured variant."""

    code = "unknown_model"


class PiiRejectedError(GatewayError):
    """The tenant or job asked for ``reject`` and the document carries personal data; the message
    names the entity types found, never the values."""

    code = "pii_detected"


class RateLimitedError(GatewayError):
    """Over one of the tenant's quotas: 429 with Retry-After and the RateLimit-* headers."""

    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, limit: float, remaining: float, reset_s: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s

    @property
    def headers(self) -> dict[str, str]:
        seconds = str(max(1, math.ceil(self.reset_s))) if math.isfinite(self.reset_s) else "86400"
        return {
            "Retry-After": seconds,
            "RateLimit-Limit": str(math.floor(self.limit)),
            "RateLimit-Remaining": str(max(0, math.floor(self.remaining))),
            "RateLimit-Reset": seconds,
        }


class GatewayConfigError(GatewayError):
    code = "config_error"


STATUS_FOR_CODE: dict[str, int] = {
    # requests that cannot succeed as sent
    "invalid_request": 422,
    "invalid_params": 422,
    "unknown_model": 422,
    "invalid_document": 422,
    "invalid_upload": 422,
    "invalid_webhook_url": 422,
    "pii_detected": 422,
    "invalid_json": 400,
    "invalid_form": 400,
    "unauthorized": 401,
    "not_found": 404,
    "job_finished": 409,
    "batch_finished": 409,
    "idempotency_conflict": 409,
    "delivery_not_replayable": 409,
    "canceled": 409,
    "payload_too_large": 413,
    "upload_too_large": 413,
    "rate_limited": 429,
    # not now; the same request may succeed later
    "temporarily_unavailable": 503,
    "overloaded": 503,
    "unavailable": 503,
    "out_of_memory": 503,
    "summarizer_unavailable": 503,
    "deadline_exceeded": 504,
    # the server's own fault (package bases raised bare are bugs too)
    "internal_error": 500,
    "store_error": 500,
    "summarizer_error": 500,
    "summarization_failed": 500,
    "summarizer_config_error": 500,
    "config_error": 500,
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """What every error answer looks like."""

    error: ErrorDetail


# The error answers a /v1 route can give, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "the body is not valid JSON, or a form is malformed"),
        (401, "no valid API key"),
        (404, "no such job, batch or delivery for this tenant"),
        (409, "the job or batch already ended, or an Idempotency-Key was reused with another body"),
        (413, "the body, text, metadata or upload is over its limit"),
        (422, "a field is invalid"),
        (
            429,
            "over a quota of the tenant: request rate, queued or running jobs, tokens a day (see Retry-After)",
        ),
        (503, "not now: the model is loading, the queue is full or the database is away (see Retry-After)"),
    )
}

# Only a sync answer waits on the engine, so only POST /v1/summaries lists this one.
DEADLINE_RESPONSE: dict[int | str, dict[str, Any]] = {
    504: {"model": ErrorBody, "description": "a sync answer was not ready within its deadline"}
}

_STARLETTE_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def status_for(exc: CondenseError) -> int:
    status = STATUS_FOR_CODE.get(exc.code)
    if status is None:
        log.error("error code %r has no HTTP status; answering %s", exc.code, 503 if exc.retryable else 500)
        return 503 if exc.retryable else 500
    return status


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if not errors:
        return "invalid_request", "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "invalid_json", f"request body is not valid JSON: {first.get('msg', '')}".rstrip(": ")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    where = ".".join(location) or "body"
    message = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    elif first.get("type") == "missing":
        message = "field required"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return "invalid_request", f"{where}: {message}{more}"


def retry_after_headers(status: int, retry_after_s: float | None = None) -> dict[str, str]:
    """The Retry-After header every 503 carries (whole seconds, at least one); none for other statuses."""
    if status != 503:
        return {}
    seconds = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
    return {"Retry-After": str(max(1, round(seconds)))}


def _retry_after(exc: CondenseError) -> float | None:
    if isinstance(exc, UnavailableError | QueueFullError):
        return exc.retry_after_s
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CondenseError)
    async def _condense_error(_request: Request, exc: CondenseError) -> JSONResponse:
        status = status_for(exc)
        headers = retry_after_headers(status, _retry_after(exc))
        if isinstance(exc, RateLimitedError):
            headers.update(exc.headers)
        return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _describe_validation(exc)
        return JSONResponse(error_body(code, message), status_code=STATUS_FOR_CODE[code])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STARLETTE_CODES.get(exc.status_code, "error")
        headers = {**retry_after_headers(exc.status_code), **(exc.headers or {})}
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
