"""Gateway errors and the handlers that answer every failure as ``{"error": {code, message}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from schema.errors import CondenseError, PermanentError, RetryableError

log = logging.getLogger(__name__)


class GatewayError(CondenseError):
    """Base of the gateway's own errors."""


class GatewayRetryableError(GatewayError, RetryableError):
    pass


class GatewayPermanentError(GatewayError, PermanentError):
    pass


class NotFound(GatewayPermanentError):
    code = "not_found"
    http_status = 404


class Unauthorized(GatewayPermanentError):
    code = "unauthorized"
    http_status = 401


class Conflict(GatewayPermanentError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(GatewayPermanentError):
    code = "payload_too_large"
    http_status = 413


class InvalidRequest(GatewayPermanentError):
    code = "invalid_request"
    http_status = 422


class GatewayConfigError(GatewayPermanentError):
    code = "config_error"


_STATUS_CODES = {
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CondenseError)
    async def _condense_error(_request: Request, exc: CondenseError) -> JSONResponse:
        headers = {}
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _describe_validation(exc)
        status = 400 if code == "invalid_json" else 422
        return JSONResponse(error_body(code, message), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers or None
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
