"""The FastAPI application: ``create_app(settings)`` builds everything from the settings it is given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.metrics import INFERENCE_SECONDS
from gateway.auth import Authenticator, is_loopback_host
from gateway.batches import router as batches_router
from gateway.bodylimit import BodyLimitMiddleware
from gateway.endpoint_cache import EndpointCache
from gateway.endpoints import router as endpoints_router
from gateway.errors import ERROR_RESPONSES, GatewayConfigError, install_error_handlers, retry_after_headers
from gateway.microbatch import MicroBatcher
from gateway.observability import install_metrics
from gateway.ratelimit import QuotaGuard
from gateway.result_cache import router as result_cache_router
from gateway.routes import router
from gateway.state import GatewayState
from gateway.submit import GroupCommitter
from gateway.usage_routes import router as usage_router
from schema.db import make_async_engine
from schema.settings import BatchUploadSettings, Settings
from summarizer import Summarizer, SummarizerError, SummaryParams, load_summarizer
from summarizer.params import params_validator
from summarizer.runtime import settle_heap

log = logging.getLogger(__name__)

SummarizerFactory = Callable[[Settings], Summarizer]


def _load_from_settings(settings: Settings) -> Summarizer:
    return load_summarizer(settings.summarizer)


async def _load_model(state: GatewayState, factory: SummarizerFactory) -> None:
    try:
        summarizer = await asyncio.to_thread(factory, state.settings)
        # One throwaway inference so the first real request does not pay for lazy initialisation.
        params = summarizer.validate_params({})
        await asyncio.to_thread(
            summarizer.summarize_batch, ["Warm-up sentence one. Warm-up sentence two."], params
        )
    except Exception as exc:
        log.exception("the summarization model failed to load")
        state.model_error = str(exc)
        return
    micro = state.settings.gateway.micro_batch

    def run_batch(items: list[tuple[str, SummaryParams]]) -> list[Any]:
        return list(summarizer.summarize_batch([doc for doc, _ in items], [params for _, params in items]))

    batcher: MicroBatcher[tuple[str, SummaryParams], Any] = MicroBatcher(
        run_batch=run_batch,
        cost=lambda item: max(1, len(item[0]) // 4),
        max_batch=micro.max_batch,
        workers=micro.workers,
        max_batch_tokens=micro.max_batch_tokens,
        max_wait_ms=micro.max_wait_ms,
        max_queue=micro.max_queue,
        on_batch=lambda _size, _tokens, seconds: INFERENCE_SECONDS.labels(path="sync").observe(seconds),
    )
    await batcher.start()
    state.summarizer = summarizer
    state.batcher = batcher
    settle_heap()
    log.info("model ready: %s", summarizer.info.as_dict())


async def _db_status(engine: AsyncEngine) -> str:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


async def _broker_status(bootstrap_servers: str) -> str:
    # A TCP connect is enough to tell whether the broker is up; the gateway itself never produces.
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=1.0)
    except (OSError, TimeoutError, ValueError) as exc:
        return f"unreachable: {type(exc).__name__}"
    writer.close()
    return "ok"


def upload_body_limit(limits: BatchUploadSettings) -> int:
    """Largest multipart body of a batch upload: its documents plus the multipart framing of each."""
    return limits.max_total_bytes + 64 * 1024 + 1_024 * limits.max_files


def create_app(settings: Settings, *, summarizer_factory: SummarizerFactory | None = None) -> FastAPI:
    factory = summarizer_factory or _load_from_settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_async_engine(settings.database)
        loopback = is_loopback_host(settings.gateway.host)
        auth = Authenticator(engine, open_allowed=loopback)
        if not await auth.any_key_created():
            if not loopback:
                await engine.dispose()
                raise GatewayConfigError(
                    f"refusing to serve on {settings.gateway.host} with no API key: "
                    "create one with `condense keys create --tenant NAME` or bind to 127.0.0.1"
                )
            log.warning(
                "no API key exists: the gateway runs open on loopback (tenant 'default') "
                "until the first `condense keys create`"
            )
        kafka = settings.kafka
        committer = GroupCommitter(
            engine,
            topic_for={"interactive": kafka.topic, "bulk": kafka.bulk_topic},
            window_ms=settings.database.group_commit_window_ms,
            max_rows=settings.database.group_commit_max_rows,
        )
        state = GatewayState(
            settings=settings, engine=engine, committer=committer, auth=auth, endpoints=EndpointCache(engine)
        )
        state.quotas = QuotaGuard(engine)
        app.state.gateway = state
        try:
            # Before serving, and in a moment (no weights): async submissions and uploads need only
            # these rules, so they are accepted while the model itself loads.
            state.params = await asyncio.to_thread(params_validator, settings.summarizer)
        except SummarizerError as exc:
            log.error("cannot read the parameter rules of the configured model: %s", exc)
        loader = asyncio.create_task(_load_model(state, factory))
        state.background.add(loader)
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            if state.batcher is not None:
                await state.batcher.stop()
            await committer.close()
            await engine.dispose()

    app = FastAPI(
        title="condense",
        version="0.1.0",
        description="Summarize long text: answered at once when short, queued when long.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    upload_limit = upload_body_limit(settings.batches)

    def body_limit(method: str, path: str) -> int:
        return upload_limit if method == "POST" and path == "/v1/batches" else settings.gateway.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    install_metrics(app)

    app.include_router(router, responses=ERROR_RESPONSES)
    # The upload route parses its own body (gateway.multipart), with batches.max_files as its limit.
    app.include_router(batches_router, responses=ERROR_RESPONSES)
    app.include_router(endpoints_router, responses=ERROR_RESPONSES)
    app.include_router(result_cache_router, responses=ERROR_RESPONSES)
    app.include_router(usage_router, responses=ERROR_RESPONSES)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        state: GatewayState = app.state.gateway
        components: dict[str, Any] = {"gateway": "ok", "db": await _db_status(state.engine)}
        components["model"] = state.model_status
        if state.model_error:
            components["model_error"] = state.model_error
        components["broker"] = await _broker_status(state.settings.kafka.bootstrap_servers)
        return JSONResponse({"status": "ok", "components": components})

    @app.get(
        "/readyz",
        tags=["ops"],
        responses={503: {"description": "not ready yet: the database is away or the model still loads"}},
    )
    async def readyz() -> JSONResponse:
        state: GatewayState = app.state.gateway
        checks = {"db": await _db_status(state.engine), "model": state.model_status}
        ready = checks["db"] == "ok" and checks["model"] == "ready"
        status = 200 if ready else 503
        return JSONResponse(
            {"ready": ready, "checks": checks}, status_code=status, headers=retry_after_headers(status)
        )

    return app
