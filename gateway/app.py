"""The FastAPI application: ``create_app(settings)`` builds everything from the settings it is given."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.metrics import ENGINE_TOKENS_PER_SECOND, INFERENCE_SECONDS
from gateway.auth import Authenticator, is_loopback_host
from gateway.batches import router as batches_router
from gateway.bodylimit import BodyLimitMiddleware
from gateway.cache_lookups import CacheLookups
from gateway.console import mount_console
from gateway.docs import install_docs
from gateway.endpoint_cache import EndpointCache
from gateway.endpoints import router as endpoints_router
from gateway.errors import ERROR_RESPONSES, GatewayConfigError, install_error_handlers, retry_after_headers
from gateway.events import EventStreams
from gateway.events import router as events_router
from gateway.microbatch import MicroBatcher
from gateway.observability import install_metrics
from gateway.pii_cache import PiiModeCache
from gateway.ratelimit import QuotaGuard
from gateway.result_cache import router as result_cache_router
from gateway.routes import router
from gateway.state import GatewayState, VariantRuntime
from gateway.submit import GroupCommitter
from gateway.usage_routes import router as usage_router
from gateway.variants import router as variants_router
from schema.db import make_async_engine
from schema.settings import BatchUploadSettings, Settings
from schema.store import audit
from schema.store.cache_front import AsyncRedisCacheFront
from schema.variants import variant_specs
from summarizer import (
    Summarizer,
    SummarizerError,
    SummarizerSettings,
    SummaryParams,
    SummaryResult,
    load_summarizer,
)
from summarizer.params import params_validator
from summarizer.runtime import settle_heap

log = logging.getLogger(__name__)

# Builds one variant's model from its summarizer settings (tests pass an in-memory one).
SummarizerFactory = Callable[[SummarizerSettings], Summarizer]


def _warm_up(summarizer: Summarizer) -> None:
    # One throwaway inference so the first real request does not pay for lazy initialisation.
    summarizer.summarize_batch(
        ["Warm-up sentence one. Warm-up sentence two."], summarizer.validate_params({})
    )


async def _load_variant(state: GatewayState, variant: VariantRuntime, factory: SummarizerFactory) -> None:
    try:
        summarizer = await asyncio.to_thread(factory, variant.spec.summarizer)
        await asyncio.to_thread(_warm_up, summarizer)
    except Exception as exc:
        # Only this variant's requests suffer; the others load and serve as usual.
        log.exception("the model of variant %r failed to load", variant.name)
        variant.error = str(exc)
        return
    micro = state.settings.gateway.micro_batch
    name = variant.name

    def run_batch(items: list[tuple[str, SummaryParams]]) -> list[Any]:
        began = time.perf_counter()
        results = list(summarizer.summarize_batch([doc for doc, _ in items], [params for _, params in items]))
        seconds = time.perf_counter() - began
        tokens = sum(result.input_tokens for result in results if isinstance(result, SummaryResult))
        if tokens and seconds > 0:
            ENGINE_TOKENS_PER_SECOND.labels(variant=name, path="sync").observe(tokens / seconds)
        return results

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
    variant.summarizer = summarizer
    variant.batcher = batcher
    log.info("model of variant %r ready: %s", name, summarizer.info.as_dict())
    try:
        # The gateway serves short texts with this model, so its loads are on record too; it does
        # not refuse a mismatch (the loader logged it), workers do (worker.allow_model_mismatch).
        await state.write(audit.record_loaded, summarizer, component="gateway", refused=False)
    except Exception as exc:
        log.warning("could not record the model load in the audit table: %s", exc)


async def _load_models(state: GatewayState, factory: SummarizerFactory) -> None:
    # One after another: loads side by side would only fight over the same cores and memory.
    for variant in state.variants.values():
        await _load_variant(state, variant, factory)
    if any(variant.ready for variant in state.variants.values()):
        settle_heap()


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
    factory = summarizer_factory or load_summarizer

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
            settings=settings,
            engine=engine,
            committer=committer,
            auth=auth,
            endpoints=EndpointCache(engine),
            variants={spec.name: VariantRuntime(spec) for spec in variant_specs(settings)},
            pii_modes=PiiModeCache(engine),
        )
        state.quotas = QuotaGuard(engine)
        state.cache_lookups = CacheLookups(engine, ttl_s=settings.cache.ttl_s)
        if settings.cache.enabled and settings.cache.backend == "redis":
            # Connects on first use: a Redis that is away costs lookups nothing but a fallback.
            state.cache_front = AsyncRedisCacheFront.from_settings(settings.cache)
        app.state.gateway = state
        for variant in state.variants.values():
            try:
                # Before serving, and in a moment (no weights): async submissions and uploads need
                # only these rules, so they are accepted while the models themselves load.
                variant.params = await asyncio.to_thread(params_validator, variant.spec.summarizer)
            except SummarizerError as exc:
                log.error("cannot read the parameter rules of variant %r: %s", variant.name, exc)
        loader = asyncio.create_task(_load_models(state, factory))
        state.background.add(loader)
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            for variant in state.variants.values():
                if variant.batcher is not None:
                    await variant.batcher.stop()
            await committer.close()
            if state.cache_front is not None:
                await state.cache_front.close()
            await engine.dispose()

    app = FastAPI(
        title="condense",
        version="0.1.0",
        description="Summarize long text: answered at once when short, queued when long.",
        lifespan=lifespan,
        # Served by gateway.docs from this package instead of a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    upload_limit = upload_body_limit(settings.batches)

    def body_limit(method: str, path: str) -> int:
        return upload_limit if method == "POST" and path == "/v1/batches" else settings.gateway.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    install_metrics(app)

    app.include_router(router, responses=ERROR_RESPONSES)
    # The upload route parses its own body (gateway.multipart), with batches.max_files as its limit.
    app.include_router(batches_router, responses=ERROR_RESPONSES)
    app.include_router(endpoints_router, responses=ERROR_RESPONSES)
    app.include_router(variants_router, responses=ERROR_RESPONSES)
    mount_console(app)
    app.include_router(events_router, responses=ERROR_RESPONSES)
    app.state.events = EventStreams(settings.gateway.events_max_streams)
    app.include_router(result_cache_router, responses=ERROR_RESPONSES)
    app.include_router(usage_router, responses=ERROR_RESPONSES)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        state: GatewayState = app.state.gateway
        components: dict[str, Any] = {"gateway": "ok", "db": await _db_status(state.engine)}
        components["model"] = state.model_status
        errors = {variant.name: variant.error for variant in state.variants.values() if variant.error}
        if errors:
            # One variant keeps the message it always had; several are told apart by name.
            components["model_error"] = next(iter(errors.values())) if len(state.variants) == 1 else errors
        if len(state.variants) > 1:
            components["variants"] = {variant.name: variant.status for variant in state.variants.values()}
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
        # A variant that failed to load does not hold back the others: its own requests get 503s.
        ready = checks["db"] == "ok" and checks["model"] in ("ready", "partial")
        status = 200 if ready else 503
        return JSONResponse(
            {"ready": ready, "checks": checks}, status_code=status, headers=retry_after_headers(status)
        )

    return app
