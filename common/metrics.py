"""Prometheus metrics shared by every component, so the dashboards see one set of names.

Each process exposes its own registry: the gateway at ``/metrics`` on its HTTP port, the relay,
workers and the notifier on ``metrics_port`` (see :mod:`common.opsserver`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LONG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

HTTP_REQUESTS = Counter(
    "condense_http_requests",
    "HTTP requests answered, by route template and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "condense_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS_S,
)
SUBMISSIONS = Counter("condense_submissions", "Jobs accepted, by route (sync or async).", ["route"])
JOBS = Counter("condense_jobs", "Jobs reaching a status, by status and route.", ["status", "route"])
JOB_FAILURES = Counter(
    "condense_job_failures", "Jobs failed, by error code and model variant.", ["code", "variant"]
)
JOB_LATENCY = Histogram(
    "condense_job_latency_seconds",
    "Time from submit to a job's final status, by model variant, route and status.",
    ["variant", "route", "status"],
    buckets=_LONG_BUCKETS_S,
)
ENGINE_TOKENS_PER_SECOND = Histogram(
    "condense_engine_tokens_per_second",
    "Input tokens the engine got through per second of one inference batch, by model variant and path.",
    ["variant", "path"],
    buckets=(100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000),
)
SUMMARY_WORDS = Histogram(
    "condense_summary_words",
    "Words per summary written, by model variant.",
    ["variant"],
    buckets=(5, 10, 25, 50, 100, 200, 400, 800, 1_600, 3_200),
)
CONSUMER_LAG = Gauge(
    "condense_kafka_consumer_lag", "Messages not yet consumed, per partition.", ["topic", "partition"]
)
CONSUMER_RECOVERIES = Counter(
    "condense_kafka_consumer_recoveries",
    "Times a worker's consumer healed a stall (seek back, rejoin, run missed jobs from the database).",
    ["lane", "reason"],
)
BATCH_DOCUMENTS = Histogram(
    "condense_batch_documents", "Documents per inference batch.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
BATCH_TOKENS = Histogram(
    "condense_batch_tokens",
    "Input tokens per inference batch.",
    buckets=(64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576),
)
INFERENCE_SECONDS = Histogram(
    "condense_inference_seconds", "Time spent in the engine per batch.", ["path"], buckets=_LONG_BUCKETS_S
)
QUEUE_WAIT_SECONDS = Histogram(
    "condense_queue_wait_seconds", "Time from submit to a worker starting the job.", buckets=_LONG_BUCKETS_S
)
OUTBOX_PENDING = Gauge(
    "condense_outbox_pending",
    "Job ids committed but not yet published to Kafka, counted by the relay at each sweep.",
)
DRIFT_PSI = Gauge(
    "condense_drift_psi",
    "Population Stability Index of a job statistic, current window against the reference window, per model.",
    ["model", "statistic"],
)
DRIFT_KS = Gauge(
    "condense_drift_ks_statistic",
    "Two-sample Kolmogorov-Smirnov statistic of a numeric job statistic between the windows, per model.",
    ["model", "statistic"],
)
DRIFT_KS_PVALUE = Gauge(
    "condense_drift_ks_pvalue", "p-value of the KS statistic (asymptotic), per model.", ["model", "statistic"]
)
DRIFT_MOVED = Gauge(
    "condense_drift_moved",
    "1 where a statistic moved (PSI over governance.drift.psi_threshold, or KS p under ks_alpha).",
    ["model", "statistic"],
)
DRIFT_WINDOW_JOBS = Gauge(
    "condense_drift_window_jobs", "Jobs in each drift window, per model.", ["model", "window"]
)
USAGE_JOBS = Counter(
    "condense_usage_jobs",
    "Jobs ended, by tenant, model and whether the cache answered.",
    ["tenant", "model", "cached"],
)
USAGE_INPUT_TOKENS = Counter(
    "condense_usage_input_tokens", "Input tokens of ended jobs, by tenant and model.", ["tenant", "model"]
)
USAGE_OUTPUT_UNITS = Counter(
    "condense_usage_output_units",
    "Output of ended jobs (tokens of abstractive models, words of extractive ones), by tenant and model.",
    ["tenant", "model"],
)
USAGE_ENGINE_SECONDS = Counter(
    "condense_usage_engine_seconds",
    "Engine time spent on ended jobs, by tenant and model.",
    ["tenant", "model"],
)
RATE_LIMITED = Counter(
    "condense_rate_limited", "Requests refused by a tenant's quota, by kind.", ["tenant", "limit"]
)
CACHE_REDIS_LOOKUPS = Counter(
    "condense_cache_redis_lookups",
    "Result cache keys looked up in its Redis front (cache.backend: redis), by result (hit or miss).",
    ["result"],
)
CACHE_REDIS_ERRORS = Counter(
    "condense_cache_redis_errors",
    "Result cache operations on Redis that failed, by operation; the database answered instead.",
    ["operation"],
)


def count_usage(
    tenant: str, model: str, *, input_tokens: int, output_units: int, engine_s: float, cached: bool
) -> None:
    """Count one ended job's usage; called after the transaction that recorded it committed."""
    USAGE_JOBS.labels(tenant=tenant, model=model, cached=str(cached).lower()).inc()
    USAGE_INPUT_TOKENS.labels(tenant=tenant, model=model).inc(input_tokens)
    USAGE_OUTPUT_UNITS.labels(tenant=tenant, model=model).inc(output_units)
    USAGE_ENGINE_SECONDS.labels(tenant=tenant, model=model).inc(engine_s)
