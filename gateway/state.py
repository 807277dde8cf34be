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
from gateway.microbatch import MicroBatcher
from gateway.submit import GroupCommitter
from schema.settings import Settings
from summarizer import Summarizer, SummaryParams

P = ParamSpec("P")
T = TypeVar("T")


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
