"""Running a batch of jobs: claim, summarize, store. Nothing here knows about Kafka.

The job store decides what happens: a job already final is skipped, so a redelivered message is
harmless; a job claimed too often without an outcome is failed instead of crashing its worker
again (a poison document never blocks its partition); results are written with guarded
transitions so that two workers racing on one job store exactly one result. A retryable failure
becomes a stored retry time, never a sleep.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from common import pii
from common.simhash import similarity as sh_similarity
from schema.drift import JobStats, job_stats
from schema.models import JobStatus, utcnow
from schema.settings import CacheSettings
from schema.store import batches, cache, jobs, usage
from schema.store import drift as drift_store
from schema.store.cache import CacheEntry, CacheOptions
from schema.store.cache_front import RedisCacheFront
from schema.store.jobs import Finished, Outcome
from schema.store.records import JobRecord
from summarizer import Summarizer, SummaryParams, SummaryResult
from summarizer.errors import OutOfMemoryError, SummarizerError
from workers.errors import StorageUnavailableError
from workers.retry import RetryPolicy
from workers.variants import VariantModels

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 0.5
_CANCEL_CHECK_EVERY_S = 1.0


@dataclass(frozen=True)
class VariantRun:
    """One ``summarize_batch`` call's worth of a Kafka batch: the jobs of one variant."""

    variant: str
    documents: int
    tokens: int
    inference_s: float


@dataclass(frozen=True)
class EndedJob:
    """A job this batch moved to a final status, as the metrics see it."""

    variant: str
    route: str
    status: str
    error_code: str | None
    latency_s: float
    summary_words: int | None


@dataclass
class BatchOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    delivery_ids: list[str] = field(default_factory=list)
    failure_codes: list[str] = field(default_factory=list)
    batches_completed: list[str] = field(default_factory=list)
    documents: int = 0
    tokens: int = 0
    inference_s: float = 0.0
    queue_wait_s: list[float] = field(default_factory=list)
    runs: list[VariantRun] = field(default_factory=list)
    ended: list[EndedJob] = field(default_factory=list)


class _BatchMonitor:
    """Progress and cancel flags for one running batch, with one database round trip per period.

    Reports are kept in memory and written together at most every ``_PROGRESS_EVERY_S``; the cancel
    flags of the whole batch are read in one query at most every ``_CANCEL_CHECK_EVERY_S``. Per-job
    writes and reads cost the pipeline a measurable share of its throughput on PostgreSQL.
    """

    def __init__(self, engine: Engine, job_ids: Sequence[str]) -> None:
        self.engine = engine
        self.job_ids = list(job_ids)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, int]] = {}
        self._flushed_at = time.monotonic()
        self._canceled: set[str] = set()
        self._checked_at = float("-inf")

    def report(self, index: int, done: int, total: int) -> None:
        with self._lock:
            self._pending[self.job_ids[index]] = (done, total)
            if time.monotonic() - self._flushed_at < _PROGRESS_EVERY_S:
                return
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        try:
            with self.engine.begin() as conn:
                jobs.record_progress(conn, pending)
        except DBAPIError as exc:
            # Progress is advisory; the final result is what must not be lost.
            log.warning("could not record progress of %d jobs: %s", len(pending), exc)

    def should_cancel(self, index: int) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= _CANCEL_CHECK_EVERY_S:
            self._checked_at = now
            try:
                with self.engine.connect() as conn:
                    self._canceled = jobs.cancel_requested(conn, self.job_ids)
            except DBAPIError as exc:
                log.warning("could not read cancel requests: %s", exc)
        return self.job_ids[index] in self._canceled


class _Heartbeat:
    """Touches the batch's running jobs every ``interval_s`` from a thread of its own, for as long
    as the engine works on them, whether or not it reports progress."""

    def __init__(self, engine: Engine, job_ids: Sequence[str], interval_s: float) -> None:
        self.engine = engine
        self.job_ids = list(job_ids)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-heartbeat", daemon=True)
        self.beats = 0

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self.engine.begin() as conn:
                    jobs.heartbeat(conn, self.job_ids)
                self.beats += 1
            except DBAPIError as exc:
                log.warning("could not record the heartbeat of %d jobs: %s", len(self.job_ids), exc)


@dataclass(frozen=True)
class _Runnable:
    job: JobRecord
    params: SummaryParams
    variant: str
    options: CacheOptions = field(default_factory=CacheOptions)


@dataclass(frozen=True)
class _Reused:
    """A summary taken from another job: a cache entry, or a duplicate earlier in the same batch."""

    summary: str
    language: str | None
    model: dict[str, str]
    input_tokens: int
    chunks: int
    output_units: int
    source_job_id: str
    similarity: float


Result = SummaryResult | SummarizerError | _Reused


class JobExecutor:
    """Runs batches of jobs; ``models`` is one model for every job or one per variant."""

    def __init__(
        self,
        engine: Engine,
        models: Summarizer | VariantModels,
        *,
        policy: RetryPolicy,
        topic_for: Mapping[str, str],
        heartbeat_s: float = 30.0,
        cache_rules: CacheSettings | None = None,
        cache_front: RedisCacheFront | None = None,
    ) -> None:
        self.engine = engine
        self.models = models if isinstance(models, VariantModels) else VariantModels.single(models)
        self.policy = policy
        self.topic_for = dict(topic_for)
        self.heartbeat_s = heartbeat_s
        # None: the result cache is off (neither read nor written by this worker).
        self.cache_rules = cache_rules if cache_rules is None or cache_rules.enabled else None
        # The cache's Redis front (cache.backend: redis): asked before the database, and given
        # every entry the database answers or newly stores.
        self.cache_front = cache_front if self.cache_rules is not None else None

    def run(self, job_ids: Sequence[str]) -> BatchOutcome:
        outcome = BatchOutcome()
        runnable, invalid = self._claim(job_ids, outcome)
        results: list[tuple[JobRecord, Result]] = list(invalid)
        entries: dict[str, CacheEntry] = {}
        if runnable:
            now = utcnow()
            outcome.queue_wait_s = [max(0.0, (now - r.job.created_at).total_seconds()) for r in runnable]
            with _Heartbeat(self.engine, [r.job.id for r in runnable], self.heartbeat_s):
                # One engine call per variant, in the order each variant first appears in the batch.
                groups: dict[str, list[_Runnable]] = {}
                for item in runnable:
                    groups.setdefault(item.variant, []).append(item)
                for variant, group in groups.items():
                    results += self._run_variant(variant, group, outcome, entries)
        if results:
            self._store(results, outcome, entries)
        return outcome

    def _run_variant(
        self,
        variant: str,
        group: Sequence[_Runnable],
        outcome: BatchOutcome,
        entries: dict[str, CacheEntry],
    ) -> list[tuple[JobRecord, Result]]:
        """One variant's jobs: those the cache or a batch mate answers, then one engine call."""
        try:
            summarizer = self.models.get(variant)
        except SummarizerError as exc:
            return [(r.job, exc) for r in group]
        results: list[tuple[JobRecord, Result]] = []
        followers: dict[str, list[tuple[_Runnable, float]]] = {}
        if self.cache_rules is not None:
            group, reused, followers = self._reuse(group, summarizer)
            results += reused
        if not group:
            return results
        began = time.perf_counter()
        try:
            summarized = self._summarize(summarizer, group)
        except SummarizerError as exc:
            summarized = [exc] * len(group)
        seconds = time.perf_counter() - began
        tokens = sum(r.input_tokens for r in summarized if isinstance(r, SummaryResult))
        outcome.runs.append(VariantRun(variant, len(group), tokens, seconds))
        outcome.inference_s += seconds
        outcome.documents += len(group)
        outcome.tokens += tokens
        results += [(r.job, result) for r, result in zip(group, summarized, strict=True)]
        for leader, result in zip(group, summarized, strict=True):
            reused_result: Result = result
            if isinstance(result, SummaryResult) and self.cache_rules is not None and leader.options.cache:
                entries[leader.job.id] = self._entry(leader, result, summarizer)
            for follower, similarity in followers.get(leader.job.id, []):
                if isinstance(result, SummaryResult):
                    reused_result = self._reused_from(leader.job.id, result, similarity, summarizer)
                results.append((follower.job, reused_result))
        return results

    # -- reuse ------------------------------------------------------------------------------

    def _key(self, r: _Runnable, summarizer: Summarizer) -> str:
        assert self.cache_rules is not None  # noqa: S101 - only called with the cache on
        return cache.cache_key(
            scope=cache.scope_for(r.job.tenant, self.cache_rules.scope),
            text=r.job.input_text,
            params=r.params.model_dump(exclude_none=True),
            model=summarizer.info.as_dict(),
        )

    def _entry(self, r: _Runnable, result: SummaryResult, summarizer: Summarizer) -> CacheEntry:
        assert self.cache_rules is not None  # noqa: S101 - only called with the cache on
        return cache.new_entry(
            tenant=r.job.tenant,
            scope=cache.scope_for(r.job.tenant, self.cache_rules.scope),
            text=r.job.input_text,
            params=r.params.model_dump(exclude_none=True),
            model=result.model.as_dict(),
            job_id=r.job.id,
            summary=result.summary,
            language=result.language,
            input_tokens=result.input_tokens,
            output_units=self._output_units(result, summarizer),
            chunks=result.chunks,
            fingerprint=cache.fingerprint(r.job.input_text, self.cache_rules),
        )

    @staticmethod
    def _output_units(result: SummaryResult, summarizer: Summarizer) -> int:
        """Tokens a generating model wrote (its own tokenizer counts them), words of an extract."""
        if result.model.kind == "extractive":
            return usage.output_units(result.summary)
        return summarizer.count_tokens(result.summary)

    def _model_of(self, job: JobRecord) -> Summarizer:
        return self.models.get(self.models.variant_of(job))

    def _reused_from(
        self, source_id: str, result: SummaryResult, similarity: float, summarizer: Summarizer
    ) -> _Reused:
        return _Reused(
            summary=result.summary,
            language=result.language,
            model=result.model.as_dict(),
            input_tokens=result.input_tokens,
            chunks=result.chunks,
            output_units=self._output_units(result, summarizer),
            source_job_id=source_id,
            similarity=similarity,
        )

    def _reuse(
        self, runnable: Sequence[_Runnable], summarizer: Summarizer
    ) -> tuple[list[_Runnable], list[tuple[JobRecord, Result]], dict[str, list[tuple[_Runnable, float]]]]:
        """Split the batch into jobs the cache answers, duplicates of another job in the batch
        (they take its result once it has one), and the leaders the engine must run."""
        rules = self.cache_rules
        assert rules is not None  # noqa: S101 - only called with the cache on
        model = summarizer.info.as_dict()
        keys = {r.job.id: self._key(r, summarizer) for r in runnable if r.options.cache}
        front = self.cache_front
        found: dict[str, CacheEntry] = {}
        if front is not None and keys:
            found = front.get_many(
                sorted(
                    {
                        (cache.scope_for(r.job.tenant, rules.scope), keys[r.job.id])
                        for r in runnable
                        if r.job.id in keys
                    }
                )
            )
        with self.engine.connect() as conn:
            loaded = cache.get_many(
                conn, [key for key in keys.values() if key not in found], ttl_s=rules.ttl_s
            )
            found.update(loaded)
            hits: dict[str, cache.Hit] = {}
            # One scan of fingerprints per scope and parameters in this pull, not one per document.
            indexes: dict[tuple[str, str], list[tuple[str, int]]] = {}
            for r in runnable:
                key = keys.get(r.job.id)
                if key is None:
                    continue
                if key in found:
                    hits[r.job.id] = cache.Hit(found[key], 1.0)
                elif r.options.near_duplicates:
                    scope = cache.scope_for(r.job.tenant, rules.scope)
                    params = r.params.model_dump(exclude_none=True)
                    group = (scope, cache.params_hash(params))
                    if group not in indexes:
                        indexes[group] = cache.near_index(
                            conn,
                            scope=scope,
                            model=model,
                            params=params,
                            limit=rules.near_duplicate_scan_limit,
                            ttl_s=rules.ttl_s,
                        )
                    hit = cache.near_hit(conn, indexes[group], r.job.input_text, rules)
                    if hit is not None:
                        hits[r.job.id] = hit
        if front is not None and loaded:
            front.put(list(loaded.values()))
        reused: list[tuple[JobRecord, Result]] = []
        leaders: list[_Runnable] = []
        followers: dict[str, list[tuple[_Runnable, float]]] = {}
        leader_by_key: dict[str, _Runnable] = {}
        prints: dict[str, int] = {}
        for r in runnable:
            hit = hits.get(r.job.id)
            if hit is not None:
                entry = hit.entry
                reused.append(
                    (
                        r.job,
                        _Reused(
                            summary=entry.summary,
                            language=entry.language,
                            model=entry.model,
                            input_tokens=entry.input_tokens,
                            chunks=entry.chunks,
                            output_units=entry.output_units,
                            source_job_id=entry.job_id,
                            similarity=hit.similarity,
                        ),
                    )
                )
                continue
            key = keys.get(r.job.id)
            if key is None:
                leaders.append(r)
                continue
            leader = leader_by_key.get(key)
            if leader is not None:
                followers.setdefault(leader.job.id, []).append((r, 1.0))
                continue
            if r.options.near_duplicates:
                own = cache.fingerprint(r.job.input_text, rules)
                near = self._near_leader(r, own, leaders, prints)
                if near is not None:
                    leader, similarity = near
                    followers.setdefault(leader.job.id, []).append((r, similarity))
                    continue
            leader_by_key[key] = r
            leaders.append(r)
        return leaders, reused, followers

    def _near_leader(
        self, r: _Runnable, own: int, leaders: Sequence[_Runnable], prints: dict[str, int]
    ) -> tuple[_Runnable, float] | None:
        """A leader earlier in the batch that ``r`` nearly duplicates (same tenant scope and params)."""
        rules = self.cache_rules
        assert rules is not None  # noqa: S101 - only called with the cache on
        scope = cache.scope_for(r.job.tenant, rules.scope)
        params = r.params.model_dump(exclude_none=True)
        for leader in leaders:
            if (
                not leader.options.cache
                or cache.scope_for(leader.job.tenant, rules.scope) != scope
                or leader.params.model_dump(exclude_none=True) != params
            ):
                continue
            theirs = prints.get(leader.job.id)
            if theirs is None:
                theirs = prints[leader.job.id] = cache.fingerprint(leader.job.input_text, rules)
            if cache.is_near_duplicate(r.job.input_text, leader.job.input_text, own, theirs, rules):
                return leader, sh_similarity(own, theirs)
        return None

    # -- claiming ---------------------------------------------------------------------------

    def _claim(
        self, job_ids: Sequence[str], outcome: BatchOutcome
    ) -> tuple[list[_Runnable], list[tuple[JobRecord, Result]]]:
        """Claim the batch; jobs whose stored parameters no longer validate fail with the rest."""
        with self.engine.begin() as conn:
            claimed = jobs.claim(conn, job_ids, max_claims=self.policy.max_claims)
            for ended in claimed.ended:
                self._count(outcome, ended)
            self._close_batches(conn, [e.job for e in claimed.ended], outcome)
        outcome.skipped += claimed.skipped
        runnable: list[_Runnable] = []
        invalid: list[tuple[JobRecord, Result]] = []
        for job in claimed.running:
            variant = self.models.variant_of(job)
            try:
                engine_params, options = cache.split_params(job.params)
                # Each job's params were checked against its own variant's rules at submit.
                params = self.models.get(variant).validate_params(engine_params)
            except SummarizerError as exc:
                invalid.append((job, exc))
            else:
                runnable.append(_Runnable(job, params, variant, options))
        return runnable, invalid

    # -- running ----------------------------------------------------------------------------

    def _summarize(self, summarizer: Summarizer, runnable: Sequence[_Runnable]) -> list[Result]:
        """Summarize, halving the batch on out-of-memory until a single document fails alone."""
        monitor = _BatchMonitor(self.engine, [r.job.id for r in runnable])
        try:
            return list(
                summarizer.summarize_batch(
                    [r.job.input_text for r in runnable],
                    [r.params for r in runnable],
                    on_progress=monitor.report,
                    should_cancel=monitor.should_cancel,
                )
            )
        except OutOfMemoryError as exc:
            if len(runnable) == 1:
                return [exc]
            middle = len(runnable) // 2
            log.warning(
                "out of memory on a batch of %d; retrying as %d + %d",
                len(runnable),
                middle,
                len(runnable) - middle,
            )
            return self._summarize(summarizer, runnable[:middle]) + self._summarize(
                summarizer, runnable[middle:]
            )

    # -- storing ----------------------------------------------------------------------------

    def _store(
        self,
        results: Sequence[tuple[JobRecord, Result]],
        outcome: BatchOutcome,
        entries: Mapping[str, CacheEntry] | None = None,
    ) -> None:
        """Every result of the batch in one transaction.

        When the database is away this raises at once: the consumer then leaves the offsets
        uncommitted and reconnects, so the ids come back and the still-running jobs are claimed
        again (their claims count towards ``max_claims``).
        """
        staged = BatchOutcome()
        # Masking and statistics tokenize text: done before the transaction, never while it holds
        # the database (on SQLite, the one write lock every submit waits for).
        summaries: dict[str, str] = {}
        stats: dict[str, JobStats] = {}
        for job, result in results:
            if isinstance(result, SummaryResult):
                summaries[job.id] = pii.summary_for(result.summary, job.pii_mode)
                computed = self._stats(job, result)
                if computed is not None:
                    stats[job.id] = computed
        counted: list[tuple[JobRecord, int | None]] = []
        stored: list[CacheEntry] = []
        try:
            with self.engine.begin() as conn:
                ended: list[JobRecord] = []
                written: list[CacheEntry] = []
                for job, result in results:
                    finished = self._store_one(conn, job, result, staged, summaries, stats)
                    if finished is not None:
                        ended.append(finished.job)
                        counted.append((finished.job, self._output_of(job, result)))
                        entry = (entries or {}).get(job.id)
                        if entry is not None and finished.job.status == JobStatus.SUCCEEDED.value:
                            written.append(entry)
                # In the transaction that stores the results: an entry never names a job that
                # did not end, nor does a job end without its entry.
                stored = cache.put(conn, written)
                self._close_batches(conn, ended, staged)
        except DBAPIError as exc:
            raise StorageUnavailableError(
                f"could not store the results of {len(results)} jobs: {exc}"
            ) from exc
        if self.cache_front is not None:
            # After the commit: Redis never holds an entry the database does not.
            self.cache_front.put(stored)
        for job, output in counted:
            usage.count(job, usage.of_job(job, output=output))
        outcome.succeeded += staged.succeeded
        outcome.failed += staged.failed
        outcome.canceled += staged.canceled
        outcome.retried += staged.retried
        outcome.skipped += staged.skipped
        outcome.delivery_ids += staged.delivery_ids
        outcome.batches_completed += staged.batches_completed
        outcome.failure_codes += staged.failure_codes
        outcome.ended += staged.ended

    def _output_of(self, job: JobRecord, result: Result) -> int | None:
        if isinstance(result, _Reused):
            return result.output_units
        if isinstance(result, SummaryResult):
            return self._output_units(result, self._model_of(job))
        return None

    def _store_one(
        self,
        conn: Connection,
        job: JobRecord,
        result: Result,
        staged: BatchOutcome,
        summaries: Mapping[str, str],
        stats: Mapping[str, JobStats],
    ) -> Finished | None:
        if isinstance(result, _Reused):
            final = Outcome(
                JobStatus.SUCCEEDED,
                summary=result.summary,
                language=result.language,
                model=result.model,
                timings={"total_s": 0.0},
                input_tokens=result.input_tokens,
                chunks=result.chunks,
                output_units=result.output_units,
                cache_hit_of=result.source_job_id,
                similarity=result.similarity,
            )
        elif isinstance(result, SummaryResult):
            final = Outcome(
                JobStatus.SUCCEEDED,
                # Masked before it is stored: the API, webhooks and e-mails all read it from here.
                summary=summaries.get(job.id, result.summary),
                language=result.language,
                model=result.model.as_dict(),
                timings=result.timings,
                input_tokens=result.input_tokens,
                chunks=result.chunks,
                output_units=self._output_units(result, self._model_of(job)),
            )
        elif result.code == "canceled":
            final = Outcome(JobStatus.CANCELED, error_code="canceled", error_message=result.message)
        elif result.retryable:
            decision = self.policy.after_failure(job.retries, utcnow())
            if decision.retry_at is not None:
                retried = jobs.retry(
                    conn,
                    job.id,
                    retry_at=decision.retry_at,
                    topic=self.topic_for[job.lane],
                    error_code=result.code,
                    error_message=result.message,
                )
                (staged.retried if retried else staged.skipped).append(job.id)
                if retried:
                    log.warning(
                        "job %s failed with a retryable error (%s); retry %d at %s",
                        job.id,
                        result.code,
                        job.retries + 1,
                        decision.retry_at.isoformat(),
                        extra={"job_id": job.id},
                    )
                return None
            final = Outcome(JobStatus.FAILED, error_code=result.code, error_message=result.message)
        else:
            final = Outcome(JobStatus.FAILED, error_code=result.code, error_message=result.message)
        finished = jobs.finish(conn, job.id, final)
        if finished is None:
            staged.skipped.append(job.id)
            return None
        computed = stats.get(job.id)
        if computed is not None and finished.job.status == JobStatus.SUCCEEDED.value:
            finished_at = finished.job.finished_at or computed.finished_at
            drift_store.insert_stats(conn, [dataclasses.replace(computed, finished_at=finished_at)])
        self._count(staged, finished)
        return finished

    def _stats(self, job: JobRecord, result: SummaryResult) -> JobStats | None:
        """The job's drift statistics; a failure here costs the statistic, never the result."""
        try:
            variant = self.models.variant_of(job)
            summarizer = self.models.get(variant)
            params = job.params or {}
            summary_tokens = summarizer.count_tokens(result.summary) if "max_new_tokens" in params else None
            return job_stats(
                job_id=job.id,
                # Per variant where the job names one (as schema.store.drift keys them), else the model.
                model_key=job.variant or result.model.name,
                finished_at=utcnow(),
                text=job.input_text,
                summary=result.summary,
                input_tokens=result.input_tokens,
                language=result.language,
                unknown_token_share=summarizer.unknown_token_share(job.input_text),
                params=params,
                summary_tokens=summary_tokens,
            )
        except Exception as exc:
            log.warning("could not compute the drift statistics of job %s: %s", job.id, type(exc).__name__)
            return None

    def _count(self, outcome: BatchOutcome, finished: Finished) -> None:
        job = finished.job
        status = JobStatus(job.status)
        {
            JobStatus.SUCCEEDED: outcome.succeeded,
            JobStatus.FAILED: outcome.failed,
            JobStatus.CANCELED: outcome.canceled,
        }[status].append(job.id)
        outcome.delivery_ids.extend(finished.delivery_ids)
        if status is JobStatus.FAILED and job.error_code:
            outcome.failure_codes.append(job.error_code)
        seconds = ((job.finished_at or utcnow()) - job.created_at).total_seconds()
        code = job.error_code if status is JobStatus.FAILED else None
        variant = self.models.variant_of(job)
        outcome.ended.append(
            EndedJob(
                variant=variant,
                route=job.route,
                status=status.value,
                error_code=code,
                latency_s=seconds,
                summary_words=len(job.summary.split()) if job.summary is not None else None,
            )
        )
        # The one line per job operators search for; ids and codes only, never text or messages.
        log.info(
            "job %s %s%s, %.2f s after submission",
            job.id,
            status.value,
            f" ({code})" if code else "",
            seconds,
            extra={
                "job_id": job.id,
                "tenant": job.tenant,
                "batch_id": job.batch_id,
                "status": status.value,
                "error_code": code,
                "variant": variant,
                "duration_s": round(seconds, 3),
            },
        )

    @staticmethod
    def _close_batches(conn: Connection, ended: Sequence[JobRecord], outcome: BatchOutcome) -> None:
        for batch_id in sorted({job.batch_id for job in ended if job.batch_id}):
            closed = batches.complete_if_done(conn, batch_id)
            if closed is not None:
                outcome.batches_completed.append(batch_id)
                outcome.delivery_ids.extend(closed.delivery_ids)
