"""The result cache on the submit path: find a text's summary before running it, and keep new ones.

Not to be confused with :mod:`gateway.cache` (a TTL cache of lookups) or
:mod:`gateway.endpoint_cache` (tenants' webhook endpoints): this one holds summaries, in the
database, shared by every replica and the workers (see :mod:`schema.store.cache`), with Redis in
front of it when ``cache.backend`` is redis (see :mod:`schema.store.cache_front`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection

from gateway.deps import StateDep, TenantDep
from gateway.errors import UnavailableError
from gateway.state import GatewayState
from schema.store import cache, jobs
from schema.store.cache import CacheEntry, CacheOptions, Hit
from schema.store.errors import CacheFrontUnavailableError
from schema.store.records import JobRecord
from summarizer import Summarizer, SummaryResult

router = APIRouter(prefix="/v1", tags=["cache"])


def enabled(state: GatewayState, options: CacheOptions) -> bool:
    return state.settings.cache.enabled and options.cache


async def lookup(
    state: GatewayState,
    summarizer: Summarizer | None,
    *,
    tenant: str,
    text: str,
    params: dict[str, Any],
    options: CacheOptions,
) -> Hit | None:
    """The cached answer to this request, if any. Without a loaded model the gateway cannot name
    the model that would run the job, so it does not guess: the worker looks again."""
    if summarizer is None or not enabled(state, options):
        return None
    rules = state.settings.cache
    scope = cache.scope_for(tenant, rules.scope)
    model = summarizer.info.as_dict()
    front = state.cache_front
    key = cache.cache_key(scope=scope, text=text, params=params, model=model)
    if front is not None:
        entry = await front.get(scope, key)
        if entry is not None:
            return Hit(entry, 1.0)
    if state.cache_lookups is not None and not options.near_duplicates:
        entry = await state.cache_lookups.get(key)
        hit = Hit(entry, 1.0) if entry is not None else None
    else:
        hit = await state.read(
            cache.find,
            scope=scope,
            text=text,
            params=params,
            model=model,
            near_duplicates=options.near_duplicates,
            rules=rules,
            key=key,
        )
    if hit is not None and front is not None:
        # The next request for this text is answered without the database.
        await front.put([hit.entry])
    return hit


async def remember(state: GatewayState, entry: CacheEntry | None) -> None:
    """Copy an entry the database just stored to the Redis front, when there is one."""
    if entry is not None and state.cache_front is not None:
        await state.cache_front.put([entry])


def entry_for(
    state: GatewayState, job: JobRecord, text: str, params: dict[str, Any], result: SummaryResult
) -> CacheEntry:
    rules = state.settings.cache
    return cache.new_entry(
        tenant=job.tenant,
        scope=cache.scope_for(job.tenant, rules.scope),
        text=text,
        params=params,
        model=result.model.as_dict(),
        job_id=job.id,
        summary=result.summary,
        language=result.language,
        input_tokens=job.input_tokens,
        output_units=len(result.summary.split()),
        chunks=result.chunks,
        fingerprint=cache.fingerprint(text, rules),
    )


def insert_hit(conn: Connection, job: JobRecord, key: str, *, topic_for: dict[str, str]) -> list[str]:
    """Store a job the cache answered (final at once: no outbox row) and count the hit."""
    delivery_ids = jobs.insert_jobs(conn, [job], topic_for=topic_for)
    cache.record_hits(conn, [key])
    return delivery_ids


@router.delete("/cache")
async def purge_cache(state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """Forget every summary this tenant's jobs put in the cache."""
    deleted = await state.write(cache.purge, tenant)
    if state.cache_front is not None:
        try:
            # After the database: a copy written back from a row read before the purge goes too.
            await state.cache_front.purge(tenant)
        except CacheFrontUnavailableError as exc:
            # Copies left in Redis would still be served: the caller must hear, and retry.
            raise UnavailableError(
                f"removed {deleted} entries from the database, but the cache's Redis is unavailable "
                "and may still hold copies; retry the purge"
            ) from exc
    return {"deleted": deleted}
