"""The FastAPI application: ``create_app(settings)`` builds everything from the settings it is given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth import Authenticator, is_loopback_host
from gateway.endpoint_cache import EndpointCache
from gateway.errors import GatewayConfigError, install_error_handlers
from gateway.microbatch import MicroBatcher
from gateway.observability import install_metrics
from gateway.submit import GroupCommitter
from schema.db import make_async_engine
from schema.metrics import INFERENCE_SECONDS
from schema.settings import Settings
from summarizer import Summarizer, SummaryParams, load_summarizer
from summarizer.runtime import settle_heap

log = logging.getLogger(__name__)

SummarizerFactory = Callable[[Settings], Summarizer]


def _load_from_settings(settings: Settings) -> Summarizer:
    return load_summarizer(settings.summarizer)


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    committer: GroupCommitter
    auth: Authenticator
    endpoints: EndpointCache
    summarizer: Summarizer | None = None
    batcher: MicroBatcher[tuple[str, SummaryParams], Any] | None = None
    model_error: str | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def model_ready(self) -> bool:
        return self.summarizer is not None and self.batcher is not None

    @property
    def model_status(self) -> str:
        return "ready" if self.model_ready else ("error" if self.model_error else "loading")


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


def create_app(settings: Settings, *, summarizer_factory: SummarizerFactory | None = None) -> FastAPI:
    factory = summarizer_factory or _load_from_settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_async_engine(settings.database)
        auth = Authenticator(engine)
        if not await auth.any_active_key():
            if not is_loopback_host(settings.gateway.host):
                await engine.dispose()
                raise GatewayConfigError(
                    f"refusing to serve on {settings.gateway.host} with no API key: "
                    "create one with `condense keys create --tenant NAME` or bind to 127.0.0.1"
                )
            log.warning("no API key exists: the gateway runs open on loopback (tenant 'default')")
        committer = GroupCommitter(
            engine,
            window_ms=settings.database.group_commit_window_ms,
            max_rows=settings.database.group_commit_max_rows,
        )
        state = GatewayState(
            settings=settings, engine=engine, committer=committer, auth=auth, endpoints=EndpointCache(engine)
        )
        app.state.gateway = state
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
    install_metrics(app)

    from gateway.batches import router as batches_router
    from gateway.endpoints import router as endpoints_router
    from gateway.routes import router

    app.include_router(router)
    app.include_router(batches_router)
    app.include_router(endpoints_router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        state: GatewayState = app.state.gateway
        components: dict[str, Any] = {"gateway": "ok", "db": await _db_status(state.engine)}
        components["model"] = state.model_status
        if state.model_error:
            components["model_error"] = state.model_error
        components["broker"] = await _broker_status(state.settings.kafka.bootstrap_servers)
        return JSONResponse({"status": "ok", "components": components})

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        state: GatewayState = app.state.gateway
        checks = {"db": await _db_status(state.engine), "model": state.model_status}
        ready = checks["db"] == "ok" and checks["model"] == "ready"
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
