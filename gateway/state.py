"""What every request handler reaches: the settings, the database, the committer, the models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth import Authenticator
from gateway.cache_lookups import CacheLookups
from gateway.endpoint_cache import EndpointCache
from gateway.errors import UnavailableError, UnknownModelError
from gateway.microbatch import MicroBatcher
from gateway.pii_cache import PiiModeCache
from gateway.ratelimit import QuotaGuard
from gateway.submit import GroupCommitter
from schema.settings import Settings
from schema.store.cache_front import AsyncRedisCacheFront
from schema.variants import VariantSpec, pick_by_weight, split_model_param
from summarizer import Summarizer, SummaryParams
from summarizer.params import ParamsValidator

P = ParamSpec("P")
T = TypeVar("T")

# The model takes about half a minute to load; asking every second would only add load.
MODEL_LOADING_RETRY_AFTER_S = 5.0


@dataclass
class VariantRuntime:
    """One variant in this process: its settings, its parameter rules and, once loaded, its model."""

    spec: VariantSpec
    summarizer: Summarizer | None = None
    batcher: MicroBatcher[tuple[str, SummaryParams], Any] | None = None
    error: str | None = None
    # The parameter rules from the settings alone, ready long before the model: queued work
    # (async jobs, batches) is validated with them while the model loads.
    params: ParamsValidator | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ready(self) -> bool:
        return self.summarizer is not None and self.batcher is not None

    @property
    def status(self) -> str:
        return "ready" if self.ready else ("error" if self.error else "loading")

    def unavailable(self) -> UnavailableError:
        """What a request that needs this variant's model hears while there is none."""
        if self.error is not None:
            return UnavailableError(
                f"the model of variant {self.name!r} failed to load; retry later or on another replica"
            )
        return UnavailableError(
            f"the model of variant {self.name!r} is still loading; retry shortly",
            retry_after_s=MODEL_LOADING_RETRY_AFTER_S,
        )

    def validate_params(self, params: Mapping[str, Any]) -> SummaryParams:
        """Check ``params`` with the loaded model, or before it is loaded with the rules from the settings.

        Raises :class:`InvalidParamsError` (422), or :class:`UnavailableError` (503) when not even the
        settings' rules could be read (the model setting is broken, which the loader reports too).
        """
        if self.summarizer is not None:
            return self.summarizer.validate_params(params)
        if self.params is None:
            raise self.unavailable()
        return self.params.validate(params)


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    committer: GroupCommitter
    auth: Authenticator
    endpoints: EndpointCache
    #: Every configured variant by name, in configuration order.
    variants: dict[str, VariantRuntime] = field(default_factory=dict)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    # Tenants' PII modes set in the database (`condense pii set`); None: the settings alone.
    pii_modes: PiiModeCache | None = None
    # Tenants' quotas; None admits everything (tests that build a state by hand).
    quotas: QuotaGuard | None = None
    # The result cache's Redis front (cache.backend: redis); None: the database alone.
    cache_front: AsyncRedisCacheFront | None = None
    # Exact cache lookups of concurrent submits, one query for many; None: a query each.
    cache_lookups: CacheLookups | None = None

    @property
    def model_status(self) -> str:
        """ready (every variant), partial (some failed, the rest ready), loading, or error (all failed)."""
        statuses = {variant.status for variant in self.variants.values()}
        if not statuses or "loading" in statuses:
            return "loading"
        if statuses == {"ready"}:
            return "ready"
        return "partial" if "ready" in statuses else "error"

    def route(self, job_id: str, params: Mapping[str, Any]) -> tuple[VariantRuntime, dict[str, Any]]:
        """The variant of a new job and its params without ``model``.

        The one ``params.model`` names, else the weights' pick for ``job_id``; raises
        :class:`UnknownModelError` (422) for a name that is not configured.
        """
        named, rest = split_model_param(params)
        if named is None:
            named = pick_by_weight(job_id, [variant.spec for variant in self.variants.values()])
        variant = self.variants.get(named)
        if variant is None:
            raise UnknownModelError(
                f"params.model: no model variant {named!r}; known: {', '.join(self.variants)}"
            )
        return variant, rest

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
