"""The result cache: summaries found again by what decides them, written where a job finishes.

The key is the SHA-256 of the scope (a tenant, or ``*`` when the cache is global), the normalized
text, the canonical parameters and the model's identity (weights' sha256, engine version, and any
variant or adapter the model info names). A change of model or engine changes every key, so a
stale summary is never served; there is nothing to invalidate.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common import simhash as sh
from schema.models import jobs_table, result_cache_table, utcnow
from schema.settings import CacheSettings
from schema.store.records import _Record
from summarizer.errors import InvalidParamsError

GLOBAL_SCOPE: Final = "*"
# What names a model's output beyond its weights; ``device`` is left out on purpose: the same
# weights and engine recipe on another processor are the same model to a client.
_IDENTITY_KEYS: Final = ("name", "sha256", "engine_version", "settings_sha256", "kind", "variant", "adapter")

_CACHE = result_cache_table
_JOBS = jobs_table


#: Request parameters about the cache itself: stored with the job, never seen by the engine.
CACHE_PARAMS: Final = ("cache", "near_duplicates")


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """A request's say on the cache: ``cache: false`` neither reads nor writes it;
    ``near_duplicates: true`` lets a near-identical text reuse a summary."""

    cache: bool = True
    near_duplicates: bool = False


def split_params(params: Mapping[str, Any] | None) -> tuple[dict[str, Any], CacheOptions]:
    """The engine's parameters and the cache options, from a request's ``params``.

    InvalidParamsError (422) when an option is not a boolean.
    """
    engine = dict(params or {})
    values: dict[str, bool] = {}
    for name in CACHE_PARAMS:
        if name not in engine:
            continue
        value = engine.pop(name)
        if not isinstance(value, bool):
            raise InvalidParamsError(f"parameter {name!r} must be true or false")
        values[name] = value
    return engine, CacheOptions(**values)


def options_params(options: CacheOptions) -> dict[str, bool]:
    """The options as they are stored in a job's params: only those that differ from the default."""
    stored: dict[str, bool] = {}
    if not options.cache:
        stored["cache"] = False
    if options.near_duplicates:
        stored["near_duplicates"] = True
    return stored


def normalize_text(text: str) -> str:
    """The text as the key sees it: NFC, Unix line ends, no surrounding whitespace.

    Deliberately little: a change inside the text can change its summary, so only changes that
    cannot (encoding form, line-end convention, outer blanks) are folded together.
    """
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()


def canonical_params(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def model_key(model: Mapping[str, Any]) -> str:
    identity = {key: str(model[key]) for key in _IDENTITY_KEYS if model.get(key) is not None}
    return hashlib.sha256(canonical_params(identity).encode()).hexdigest()


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_params(params).encode()).hexdigest()


def scope_for(tenant: str, scope: str) -> str:
    """The scope an entry lives in: the tenant's own unless the cache is configured global."""
    return GLOBAL_SCOPE if scope == "global" else tenant


def cache_key(*, scope: str, text: str, params: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for part in (scope, model_key(model), canonical_params(params), normalize_text(text)):
        digest.update(part.encode())
        # A separator no part contains keeps ("ab", "c") and ("a", "bc") apart.
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheEntry(_Record):
    key: str
    tenant: str
    scope: str
    model_key: str
    job_id: str
    params_hash: str
    summary: str
    language: str | None
    model: dict[str, Any]
    input_tokens: int
    output_units: int
    chunks: int
    simhash: int | None
    hits: int
    created_at: datetime
    last_hit_at: datetime | None

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._columns()}


def new_entry(
    *,
    tenant: str,
    scope: str,
    text: str,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    job_id: str,
    summary: str,
    language: str | None,
    input_tokens: int,
    output_units: int,
    chunks: int,
    fingerprint: int | None = None,
) -> CacheEntry:
    """An entry for ``text``'s summary; ``scope`` is what :func:`scope_for` returned."""
    return CacheEntry(
        key=cache_key(scope=scope, text=text, params=params, model=model),
        tenant=tenant,
        scope=scope,
        model_key=model_key(model),
        job_id=job_id,
        params_hash=params_hash(params),
        summary=summary,
        language=language,
        model=dict(model),
        input_tokens=input_tokens,
        output_units=output_units,
        chunks=chunks,
        simhash=sh.to_signed(fingerprint) if fingerprint is not None else None,
        hits=0,
        created_at=utcnow(),
        last_hit_at=None,
    )


def put(conn: Connection, entries: list[CacheEntry]) -> list[CacheEntry]:
    """Store entries; a key already there keeps its first entry (same inputs, same summary).
    Returns the entries stored, those that were new: what a front copy (Redis) may mirror.

    ON CONFLICT DO NOTHING rather than read-then-insert: two workers finishing the same text at
    once must not roll back each other's whole batch on a duplicate key.
    """
    if not entries:
        return []
    rows = [entry.as_row() for entry in entries]
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(_CACHE).on_conflict_do_nothing(index_elements=["key"]).returning(_CACHE.c.key, _CACHE.c.job_id)
    )
    stored = {(row.key, row.job_id) for row in conn.execute(statement, rows)}
    # The job too: of two entries with one key in the same statement only the first is stored.
    return [entry for entry in entries if (entry.key, entry.job_id) in stored]


def _fresh(query: Any, ttl_s: float, now: datetime | None) -> Any:
    if ttl_s > 0:
        query = query.where(_CACHE.c.created_at >= (now or utcnow()) - timedelta(seconds=ttl_s))
    return query


def get(conn: Connection, key: str, *, ttl_s: float = 0, now: datetime | None = None) -> CacheEntry | None:
    """The entry under ``key``, unless it is older than ``ttl_s`` (0: entries do not expire)."""
    row = conn.execute(_fresh(select(_CACHE).where(_CACHE.c.key == key), ttl_s, now)).mappings().one_or_none()
    return CacheEntry.from_row(row) if row is not None else None


def get_many(
    conn: Connection, keys: list[str], *, ttl_s: float = 0, now: datetime | None = None
) -> dict[str, CacheEntry]:
    if not keys:
        return {}
    query = _fresh(select(_CACHE).where(_CACHE.c.key.in_(sorted(set(keys)))), ttl_s, now)
    return {row["key"]: CacheEntry.from_row(row) for row in conn.execute(query).mappings()}


def record_hits(conn: Connection, keys: list[str]) -> None:
    """Count hits, in the transaction that stores the jobs they answered."""
    now = utcnow()
    for key in keys:
        conn.execute(
            update(_CACHE).where(_CACHE.c.key == key).values(hits=_CACHE.c.hits + 1, last_hit_at=now)
        )


def purge(conn: Connection, tenant: str) -> int:
    """Delete every entry the tenant's jobs wrote; returns how many."""
    return int(conn.execute(delete(_CACHE).where(_CACHE.c.tenant == tenant)).rowcount)


@dataclass(frozen=True, slots=True)
class NearMatch:
    entry: CacheEntry
    text: str
    distance: int


def near_index(
    conn: Connection,
    *,
    scope: str,
    model: Mapping[str, Any],
    params: Mapping[str, Any],
    limit: int,
    ttl_s: float = 0,
    now: datetime | None = None,
) -> list[tuple[str, int]]:
    """(key, unsigned fingerprint) of the newest ``limit`` entries of a scope, model and parameters.

    A bounded scan, since an index on Hamming distance is more than either database offers; keys
    and fingerprints only, so that a caller with many texts to match reads it once.
    """
    query = (
        select(_CACHE.c.key, _CACHE.c.simhash)
        .where(
            _CACHE.c.scope == scope,
            _CACHE.c.model_key == model_key(model),
            _CACHE.c.params_hash == params_hash(params),
            _CACHE.c.simhash.is_not(None),
        )
        .order_by(_CACHE.c.created_at.desc())
        .limit(limit)
    )
    return [(row.key, sh.to_unsigned(row.simhash)) for row in conn.execute(_fresh(query, ttl_s, now))]


def near_candidates(
    conn: Connection, index: list[tuple[str, int]], fingerprint: int, *, max_distance: int
) -> list[NearMatch]:
    """Entries of ``index`` within ``max_distance`` bits of ``fingerprint``, nearest first, with
    their source job's text (for the caller's content check)."""
    close = {key: sh.distance(value, fingerprint) for key, value in index}
    close = {key: gap for key, gap in close.items() if gap <= max_distance}
    if not close:
        return []
    rows = conn.execute(
        select(_CACHE, _JOBS.c.input_text)
        .join(_JOBS, _JOBS.c.id == _CACHE.c.job_id)
        .where(_CACHE.c.key.in_(sorted(close)))
    ).mappings()
    found = [NearMatch(CacheEntry.from_row(row), row["input_text"], close[row["key"]]) for row in rows]
    found.sort(key=lambda match: match.distance)
    return found


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached summary that answers a text: exactly (similarity 1.0) or as a near duplicate."""

    entry: CacheEntry
    similarity: float


def fingerprint(text: str, rules: CacheSettings) -> int:
    return sh.simhash(normalize_text(text), shingle_words=rules.near_duplicate_shingle_words)


def is_near_duplicate(a: str, b: str, fingerprint_a: int, fingerprint_b: int, rules: CacheSettings) -> bool:
    """Close fingerprints, and no changed word that could change the summary (see common.simhash)."""
    return sh.distance(fingerprint_a, fingerprint_b) <= rules.near_duplicate_max_distance and sh.same_content(
        a, b, max_changed_share=rules.near_duplicate_max_changed_words
    )


def find(
    conn: Connection,
    *,
    scope: str,
    text: str,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    near_duplicates: bool,
    rules: CacheSettings,
    now: datetime | None = None,
    key: str | None = None,
) -> Hit | None:
    """The entry that answers ``text``: its exact key, else (when asked) a near duplicate.
    ``key``: the exact key when the caller has it already (hashing a long text twice costs)."""
    key = key or cache_key(scope=scope, text=text, params=params, model=model)
    entry = get(conn, key, ttl_s=rules.ttl_s, now=now)
    if entry is not None:
        return Hit(entry, 1.0)
    if not near_duplicates:
        return None
    index = near_index(
        conn,
        scope=scope,
        model=model,
        params=params,
        limit=rules.near_duplicate_scan_limit,
        ttl_s=rules.ttl_s,
        now=now,
    )
    return near_hit(conn, index, text, rules)


def near_hit(conn: Connection, index: list[tuple[str, int]], text: str, rules: CacheSettings) -> Hit | None:
    """The nearest entry of ``index`` that passes the content check, if any."""
    own = fingerprint(text, rules)
    for match in near_candidates(conn, index, own, max_distance=rules.near_duplicate_max_distance):
        if sh.same_content(text, match.text, max_changed_share=rules.near_duplicate_max_changed_words):
            return Hit(match.entry, sh.similarity(own, sh.to_unsigned(match.entry.simhash or 0)))
    return None


def hit_columns(hit: Hit) -> dict[str, Any]:
    """The columns of a job answered by ``hit``, for :func:`schema.store.jobs.new_job`: final
    at once, with the source job named."""
    entry, now = hit.entry, utcnow()
    return {
        "status": "succeeded",
        "summary": entry.summary,
        "language": entry.language,
        "model": entry.model,
        "input_tokens": entry.input_tokens,
        "progress_done": entry.chunks,
        "progress_total": entry.chunks,
        "timings": {"total_s": 0.0},
        "cached": True,
        "cache_hit_of": entry.job_id,
        "similarity": hit.similarity,
        "started_at": now,
        "finished_at": now,
    }
