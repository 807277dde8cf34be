"""What every request handler reaches: the settings, the database, the committer, the model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth import Authenticator
from gateway.endpoint_cache import EndpointCache
from gateway.errors import UnavailableError
from gateway.microbatch import MicroBatcher
from gateway.ratelimit import QuotaGuard
from gateway.submit import GroupCommitter
from schema.settings import Settings
from summarizer import Summarizer, SummaryParams
from summarizer.params import ParamsValidator

P = ParamSpec("P")
T = TypeVar("T")

# The model takes about half a minute to load; asking every second would only add load.
MODEL_LOADING_RETRY_AFTER_S = 5.0


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
    # The parameter rules from the settings alone, ready long before the model: queued work
    # (async jobs, batches) is validated with them while the model loads.
    params: ParamsValidator | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    # Tenants' quotas; None admits everything (tests that build a state by hand).
    quotas: QuotaGuard | None = None

    @property
    def model_ready(self) -> bool:
        return self.summarizer is not None and self.batcher is not None

    @property
    def model_status(self) -> str:
        return "ready" if self.model_ready else ("error" if self.model_error else "loading")

    def model_unavailable(self) -> UnavailableError:
        """What a request that needs this process's model hears while there is none."""
        if self.model_error is not None:
            return UnavailableError(
                "the summarization model failed to load; retry later or on another replica"
            )
        return UnavailableError(
            "the model is still loading; retry shortly", retry_after_s=MODEL_LOADING_RETRY_AFTER_S
        )

    def validate_params(self, params: dict[str, Any]) -> SummaryParams:
        """Check ``params`` with the loaded model, or before it is loaded with the rules from the settings.

        Raises :class:`InvalidParamsError` (422), or :class:`UnavailableError` (503) when not even the
        settings' rules could be read (the model setting is broken, which the loader reports too).
        """
        if self.summarizer is not None:
            return self.summarizer.validate_params(params)
        if self.params is None:
            raise self.model_unavailable()
        return self.params.validate(params)

    @property
    def topic_for(self) -> dict[str, str]:
        """The Kafka topic of each lane, for the outbox rows of new jobs."""
        kafka = self.settings.kafka
        return {"interactive": kafka.topic, "bulk": kafka.bulk_topic}

    async def read(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store function on a connection of its own, without a write transaction."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a store function in a transaction of its own, committed when it returns."""
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)
