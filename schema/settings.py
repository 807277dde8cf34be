"""The one typed settings object.

Built once in an entry point by :func:`load_settings` (YAML file, then ``CONDENSE_*`` environment
variables on top) and passed down; nothing reads settings at import time.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from common.errors import ConfigError
from common.pii import PiiMode
from summarizer.settings import SummarizerSettings

CONFIG_ENV_VAR = "CONDENSE_CONFIG"
# Read by the CLI client and the benchmarks, not settings of a running component.
NON_SETTING_ENV_VARS = frozenset({CONFIG_ENV_VAR, "CONDENSE_API_KEY", "CONDENSE_BENCH_PG"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(_Section):
    url: str = Field(
        default="sqlite:///var/condense.db",
        description="SQLAlchemy URL. SQLite is the embedded default; use postgresql://... in production.",
    )
    pool_size: int = Field(default=10, ge=1, description="Connections per process (PostgreSQL).")
    group_commit_window_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="Submits arriving within this window share one INSERT transaction.",
    )
    group_commit_max_rows: int = Field(default=256, ge=1, description="Most submits in one transaction.")
    retention_days: float = Field(
        default=0,
        ge=0,
        description="Finished jobs older than this are deleted by the relay's sweeper; 0 keeps all.",
    )


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    topic: str = Field(default="condense.jobs", description="Interactive long jobs.")
    bulk_topic: str = Field(default="condense.jobs.bulk", description="Documents of uploaded batches.")
    partitions: int = Field(default=4, ge=1, description="Partitions created for each topic.")
    replication_factor: int = Field(
        default=1, ge=1, description="Replicas of each topic (3 on a real cluster)."
    )
    consumer_group: str = Field(default="condense-workers", description="Consumer group every worker joins.")
    compression_type: Literal["lz4", "gzip", "none"] = Field(
        default="lz4", description="Producer compression."
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000, description="A worker silent this long leaves the group; its jobs move on."
    )
    heartbeat_interval_ms: int = Field(
        default=3_000,
        ge=100,
        description="Consumer heartbeat period; a third of session_timeout_ms, as Kafka advises. Members "
        "learn of a rebalance at their next heartbeat, and an idle worker's cost is mostly heartbeats.",
    )
    request_timeout_ms: int = Field(default=15_000, ge=1_000, description="Broker request timeout.")


class CelerySettings(_Section):
    broker_url: str = Field(
        default="sqla+sqlite:///var/celery-broker.db",
        description="Carries follow-up tasks only (notifications, sweeps). Redis or RabbitMQ in production.",
    )


class MicroBatchSettings(_Section):
    max_batch: int = Field(default=16, ge=1, description="Most requests in one inference batch.")
    max_batch_tokens: int = Field(default=8_192, ge=1, description="Token budget of one sync batch.")
    max_wait_ms: float = Field(
        default=1.0,
        ge=0,
        description="Longest a lone request waits for company; under load batches fill anyway.",
    )
    max_queue: int = Field(default=256, ge=1, description="Requests waiting beyond this get 503.")
    workers: int = Field(
        default=2,
        ge=1,
        description="Batches in flight at once, so one batch's Python work overlaps another's inference "
        "(measured on 2 cores: 2.4-2.6x the throughput of one request at a time, against ~1.8x with one).",
    )


class GatewaySettings(_Section):
    host: str = Field(default="127.0.0.1", description="Bind address; off loopback an API key must exist.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port.")
    sync_threshold_tokens: int = Field(
        default=512, ge=1, description="mode=auto answers texts up to this many tokens at once."
    )
    sync_max_tokens: int = Field(default=2_048, ge=1, description="mode=sync refuses longer texts (413).")
    max_text_bytes: int = Field(default=2_000_000, ge=1, description="Larger texts get 413.")
    max_body_bytes: int = Field(
        default=8_000_000,
        ge=1_024,
        description="Largest JSON request body; refused with 413 while it streams in, before it is buffered.",
    )
    max_metadata_bytes: int = Field(
        default=16_384, ge=2, description="Largest `metadata` object of a job or batch, as compact JSON."
    )
    request_timeout_s: float = Field(default=30.0, gt=0, description="Default deadline of a sync request.")
    max_request_timeout_s: float = Field(default=120.0, gt=0, description="Cap on a per-request override.")
    events_poll_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often an open event stream (/v1/.../events) reads its job or batch rows again.",
    )
    events_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        description="A comment line every this many seconds keeps an idle event stream open through proxies.",
    )
    events_retry_ms: int = Field(
        default=3_000, ge=0, description="Reconnect delay an event stream advises its clients (SSE `retry:`)."
    )
    events_settle_s: float = Field(
        default=2.0,
        ge=0,
        description="A batch stream announces a document this long after it finished, so that one "
        "committed late by a slower worker is never skipped; the end of a batch sends the rest at once.",
    )
    events_max_streams: int = Field(
        default=1_000, ge=1, description="Open event streams per gateway process; more get 503 + Retry-After."
    )
    micro_batch: MicroBatchSettings = Field(default_factory=MicroBatchSettings)


class RetryPolicySettings(_Section):
    max_claims: int = Field(
        default=3,
        ge=1,
        description="Claims of one job that never reached an outcome (its worker died on it) before it "
        "is failed as a poison document.",
    )
    max_retries: int = Field(
        default=3, ge=0, description="Retryable failures of one job (e.g. out of memory) before it fails."
    )
    base_delay_s: float = Field(
        default=1.0, ge=0, description="Wait before the first retry; doubles per retry."
    )
    max_delay_s: float = Field(default=60.0, ge=0, description="Cap on the wait before one retry.")


class WorkerSettings(_Section):
    max_batch: int = Field(default=32, ge=1, description="Most jobs pulled from Kafka at once.")
    max_wait_ms: int = Field(default=200, ge=0, description="Longest the consumer waits to fill a batch.")
    retry: RetryPolicySettings = Field(default_factory=RetryPolicySettings)
    heartbeat_s: float = Field(
        default=30.0,
        gt=0,
        description="How often a worker marks the jobs it runs as alive; keep it well under "
        "relay.running_timeout_s, after which a silent job is handed to another worker.",
    )
    stall_after_s: float = Field(
        default=30.0,
        gt=0,
        description="A job Kafka handed out this long ago (ten times as long while another worker is "
        "busy on its lane) that a caught-up lane never received means the lane is stalled: its "
        "consumer rejoins the group and, if that does not bring the job, runs it from the database.",
    )
    allow_model_mismatch: bool = Field(
        default=False,
        description="Start even when the model's files differ from the manifest written when they were "
        "first loaded (the mismatch is still logged and recorded as an audit event).",
    )
    metrics_port: int = Field(
        default=9101, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the metrics/health server; 0.0.0.0 where Prometheus and probes "
        "come from outside (a pod, a container).",
    )


class RelaySettings(_Section):
    batch_size: int = Field(default=500, ge=1, description="Most outbox rows published in one round.")
    linger_ms: int = Field(
        default=5, ge=0, description="How long the producer waits for more ids before sending a batch."
    )
    send_retries: int = Field(
        default=5, ge=0, description="Producer retries of a failed send before the round gives up on it."
    )
    sweep_interval_s: float = Field(
        default=5.0, gt=0, description="How often the sweeper republishes, requeues and purges."
    )
    sweep_limit: int = Field(
        default=5_000, ge=1, description="Most jobs one sweep republishes, requeues or purges, each."
    )
    requeue_after_s: float = Field(
        default=1_800.0,
        gt=0,
        description="Queued jobs older than this are published again, a last resort: a broker that lost "
        "its data is noticed at once and every queued job republished then.",
    )
    running_timeout_s: float = Field(
        default=900.0, gt=0, description="A running job untouched this long is handed back to the queue."
    )
    metrics_port: int = Field(
        default=9103, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 turns them off."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the metrics/health server; 0.0.0.0 where Prometheus and probes "
        "come from outside (a pod, a container).",
    )


class SmtpSettings(_Section):
    host: str = Field(default="127.0.0.1", description="SMTP server.")
    port: int = Field(
        default=25, ge=0, le=65535, description="SMTP port (465 with use_tls, 587 with start_tls)."
    )
    username: str | None = Field(default=None, description="Login, when the server wants one.")
    password: SecretStr | None = Field(default=None, description="Password; masked by `config show`.")
    use_tls: bool = Field(default=False, description="TLS from the first byte (port 465).")
    start_tls: bool = Field(default=False, description="Upgrade with STARTTLS after connecting.")
    timeout_s: float = Field(default=15.0, gt=0, description="Timeout of one SMTP exchange.")
    from_address: str = Field(default="condense@localhost", description="Sender of notification emails.")


class NotifierSettings(_Section):
    webhook_timeout_s: float = Field(default=15.0, gt=0, description="Timeout of one webhook attempt.")
    retry_schedule_s: list[float] = Field(
        default=[5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400],
        description="Wait before each retry; the Standard Webhooks schedule by default.",
    )
    allow_loopback: bool = Field(default=False, description="Let webhooks target loopback (tests, dev).")
    allow_private: bool = Field(default=False, description="Let webhooks target private networks.")
    http_allowlist: list[str] = Field(default_factory=list, description="Hosts that may use plain http.")
    max_inline_summary_bytes: int = Field(
        default=65_536, ge=0, description="Longer summaries are sent as a link (summary_url) instead."
    )
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="Base of links in payloads.")
    sweep_interval_s: float = Field(default=5.0, gt=0, description="How often due deliveries are looked for.")
    webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="whsec_ secrets that sign webhooks whose job names none; during a rotation list the"
        " new and the old one, and every message carries a signature from each.",
    )
    claim_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a delivery being attempted stays hidden from other notifier processes;"
        " must exceed the longest attempt (webhook or SMTP timeout).",
    )
    max_parallel_deliveries: int = Field(
        default=8, ge=1, description="Deliveries one process attempts at the same time."
    )
    sweep_max_deliveries: int = Field(
        default=500,
        ge=1,
        description="Most due deliveries one sweep takes on; the next sweep takes the rest.",
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the metrics/health server; 0.0.0.0 where Prometheus and probes "
        "come from outside (a pod, a container).",
    )


class BatchUploadSettings(_Section):
    max_files: int = Field(default=10_000, ge=1, description="Documents in one batch upload.")
    max_file_bytes: int = Field(default=10_000_000, ge=1, description="Bytes of one document.")
    max_total_bytes: int = Field(default=200_000_000, ge=1, description="Bytes of one upload, unpacked.")


class CacheSettings(_Section):
    enabled: bool = Field(
        default=True,
        description="Answer a text already summarized with the same params and model from the result cache.",
    )
    scope: Literal["tenant", "global"] = Field(
        default="tenant",
        description="tenant: a tenant only hits its own entries; global: every tenant shares them.",
    )
    ttl_s: float = Field(
        default=0,
        ge=0,
        description="Entries older than this are not served; 0 serves them as long as they last.",
    )
    near_duplicate_max_distance: int = Field(
        default=12,
        ge=0,
        le=32,
        description="Most SimHash bits (of 64) two texts may differ by for params.near_duplicates to reuse a summary.",
    )
    near_duplicate_shingle_words: int = Field(
        default=3, ge=1, le=8, description="Words per shingle of the SimHash fingerprint."
    )
    near_duplicate_max_changed_words: float = Field(
        default=0.02,
        ge=0,
        le=0.5,
        description="Largest share of words that may differ between near duplicates (none a number, "
        "a name or a negation).",
    )
    near_duplicate_scan_limit: int = Field(
        default=2_000, ge=1, description="Newest cache entries compared when looking for a near duplicate."
    )
    backend: Literal["database", "redis"] = Field(
        default="database",
        description="database: entries live in the database alone; redis: the database stays the source "
        "of truth and Redis fronts it with the hot entries (exact keys only).",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis of the front (cache.backend: redis)."
    )
    redis_key_prefix: str = Field(
        default="condense:cache",
        min_length=1,
        description="Prefix of every Redis key of the front, so that it can share a Redis with others.",
    )
    redis_ttl_s: float = Field(
        default=3_600,
        gt=0,
        description="Longest an entry stays in Redis after it was put there (ttl_s still applies).",
    )
    redis_max_entries: int = Field(
        default=100_000,
        ge=1,
        description="Most entries in Redis; each write evicts the least recently used beyond it.",
    )
    redis_timeout_s: float = Field(
        default=0.25,
        gt=0,
        description="Longest wait for Redis (connect or command) before the database answers instead.",
    )


class LoggingSettings(_Section):
    format: Literal["text", "json"] = Field(default="text", description="json: one object per line.")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")


# Lower case only: names also arrive through CONDENSE_VARIANTS__<NAME>__..., which are case-blind.
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# What the summarizer section alone is called when no variants are configured.
DEFAULT_VARIANT = "default"


class VariantSettings(_Section):
    weight: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Share of the jobs routed here by weight (relative to the other variants); 0 serves "
        "only requests that name this variant in params.model.",
    )
    summarizer: dict[str, Any] = Field(
        default_factory=dict,
        description="Keys of the summarizer section that differ for this variant (model, backend, ...); "
        "the rest comes from the summarizer section.",
    )

    @field_validator("summarizer")
    @classmethod
    def _known_summarizer_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = SummarizerSettings.model_fields
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise ValueError(
                    f"unknown summarizer key {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                )
        try:
            checked = SummarizerSettings.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
        # The checked values, not the raw ones: environment variables arrive as strings.
        return {key: getattr(checked, key) for key in value}


class PiiSettings(_Section):
    default_mode: PiiMode = Field(
        default="off",
        description="How personal data in documents is treated unless the tenant or the job says "
        "otherwise: off, mask_summary (mask the summary everywhere it goes), mask_stored (mask the "
        "document before it is stored or queued, and the summary), reject (refuse it with 422).",
    )
    tenant_modes: dict[str, PiiMode] = Field(
        default_factory=dict,
        description="Per-tenant default mode, overriding default_mode; a mode set in the database with "
        "`condense pii set` wins over both, and a job's own `pii` field over everything.",
    )

    def mode_for(self, tenant: str, requested: PiiMode | None = None) -> PiiMode:
        if requested is not None:
            return requested
        return self.tenant_modes.get(tenant, self.default_mode)


class DriftSettings(_Section):
    window_s: float = Field(
        default=86_400.0, gt=0, description="The current window: jobs finished this long before now."
    )
    reference_s: float = Field(
        default=604_800.0,
        gt=0,
        description="The reference window, ending where the current window starts.",
    )
    psi_threshold: float = Field(
        default=0.2, gt=0, description="A statistic whose PSI between the windows exceeds this has moved."
    )
    ks_alpha: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="A numeric statistic whose two-sample KS p-value is below this has moved too.",
    )
    min_jobs: int = Field(
        default=30, ge=1, description="Fewer jobs than this in either window: no verdict for that model."
    )
    interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often the relay recomputes the drift gauges it exports on /metrics.",
    )


class GovernanceSettings(_Section):
    pii: PiiSettings = Field(default_factory=PiiSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONDENSE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    celery: CelerySettings = Field(default_factory=CelerySettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    summarizer: SummarizerSettings = Field(default_factory=SummarizerSettings)
    variants: dict[str, VariantSettings] = Field(
        default_factory=dict,
        description="Named models served side by side (A/B tests), each the summarizer section with its "
        "own overrides; jobs go to one by params.model or else by weight. Empty: one variant, "
        f"{DEFAULT_VARIANT!r}, from the summarizer section.",
    )
    relay: RelaySettings = Field(default_factory=RelaySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    notifier: NotifierSettings = Field(default_factory=NotifierSettings)
    batches: BatchUploadSettings = Field(default_factory=BatchUploadSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    data_dir: str = Field(default="var", description="Where the embedded stack keeps its files.")

    @field_validator("data_dir")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("variants")
    @classmethod
    def _variant_names_and_weights(cls, value: dict[str, VariantSettings]) -> dict[str, VariantSettings]:
        for name in value:
            if not VARIANT_NAME.fullmatch(name):
                raise ValueError(
                    f"variant name {name!r} is not a slug (lower-case letters, digits, '-' and '_', "
                    "at most 64, starting with a letter or digit)"
                )
        if value and sum(variant.weight for variant in value.values()) <= 0:
            raise ValueError("the weights of the variants must add up to more than 0")
        return value

    def variant_summarizers(self) -> dict[str, SummarizerSettings]:
        """The summarizer settings of each variant, in configuration order."""
        if not self.variants:
            return {DEFAULT_VARIANT: self.summarizer}
        base = self.summarizer.model_dump()
        return {
            name: SummarizerSettings.model_validate({**base, **variant.summarizer})
            for name, variant in self.variants.items()
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; environment variables must win over it.
        return (env_settings, init_settings)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets replaced by asterisks."""
        data = self.model_dump(mode="json")
        data["database"]["url"] = _mask_url_password(self.database.url)
        data["celery"]["broker_url"] = _mask_url_password(self.celery.broker_url)
        data["cache"]["redis_url"] = _mask_url_password(self.cache.redis_url)
        return data


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from ``path`` (or ``$CONDENSE_CONFIG``) and ``CONDENSE_*`` variables.

    Raises :class:`ConfigError` with one line naming the offending key.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV_VAR):
        path = env[CONFIG_ENV_VAR]
    file_data = _read_yaml(Path(path)) if path is not None else {}
    check_env_names(env)
    try:
        if environ is None:
            return Settings(**file_data)
        # An explicit environment (tests) replaces os.environ for the duration of the build.
        saved = dict(os.environ)
        try:
            for key in [k for k in os.environ if k.startswith("CONDENSE_")]:
                del os.environ[key]
            os.environ.update({k: v for k, v in environ.items() if k.startswith("CONDENSE_")})
            return Settings(**file_data)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from exc


def check_env_names(env: Mapping[str, str]) -> None:
    """Refuse a ``CONDENSE_*`` variable that sets nothing, naming it and, if it can, its fix.

    pydantic-settings silently ignores a variable that matches no field: a typo such as
    CONDENSE_DATABSE__URL or CONDENSE_GATEWAY_PORT would leave the default in place without a word.
    Kubernetes service links (see :func:`is_service_link`) are the one kind of stranger let through.
    """
    known = set(Settings.model_fields)
    for name, value in env.items():
        if not name.startswith("CONDENSE_") or name in NON_SETTING_ENV_VARS:
            continue
        rest = name.removeprefix("CONDENSE_")
        section = rest.split("__", 1)[0].lower()
        if "__" in rest:
            if section not in known:
                close = difflib.get_close_matches(section, known, n=1)
                hint = (
                    f"; did you mean CONDENSE_{close[0].upper()}__{rest.split('__', 1)[1]}?" if close else ""
                )
                raise ConfigError(f"invalid setting {name}: unknown section {section!r}{hint}")
            continue
        # A top-level key (CONDENSE_DATA_DIR) or a whole section given as JSON.
        if section in known or is_service_link(name, value):
            continue
        guess = _guess_setting(rest)
        raise ConfigError(
            f"invalid setting {name}: not a CONDENSE_<SECTION>__<KEY> variable; "
            f"did you mean {guess or 'CONDENSE_SECTION__KEY'}?"
        )


def _guess_setting(rest: str) -> str | None:
    """The settings variable a single-underscore spelling most likely meant, if one fits exactly."""
    words = rest.lower().split("_")

    def walk(model: type[BaseModel], words: list[str]) -> list[str] | None:
        for cut in range(1, len(words) + 1):
            name = "_".join(words[:cut])
            field = model.model_fields.get(name)
            if field is None:
                continue
            remaining = words[cut:]
            annotation = field.annotation
            if not remaining:
                return [name]
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found = walk(annotation, remaining)
                if found is not None:
                    return [name, *found]
        return None

    path = walk(Settings, words)
    return "CONDENSE_" + "__".join(part.upper() for part in path) if path else None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_port(value: str) -> bool:
    return value.isdigit() and 0 < int(value) <= 65_535


_LINK_URL = re.compile(r"(?:tcp|udp|sctp)://(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>\d+)")


def _is_link_url(value: str) -> bool:
    match = _LINK_URL.fullmatch(value)
    return match is not None and _is_ip(match["v6"] or match["v4"]) and _is_port(match["port"])


_PROTO = "(?:TCP|UDP|SCTP)"
# What follows the Service's name in each variable kubelet writes, and the shape of its value.
_SERVICE_LINK_SUFFIXES: tuple[tuple[re.Pattern[str], Callable[[str], bool]], ...] = (
    (re.compile("SERVICE_HOST"), _is_ip),
    (re.compile("SERVICE_PORT(?:_[A-Z0-9_]+)?"), _is_port),
    (re.compile(rf"PORT(?:_\d+_{_PROTO})?"), _is_link_url),
    (re.compile(rf"PORT_\d+_{_PROTO}_PROTO"), lambda value: value in {"tcp", "udp", "sctp"}),
    (re.compile(rf"PORT_\d+_{_PROTO}_PORT"), _is_port),
    (re.compile(rf"PORT_\d+_{_PROTO}_ADDR"), _is_ip),
)


def is_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` is a Kubernetes service-link variable rather than a setting.

    Kubernetes gives every pod variables for each Service that existed when it started (unless the
    pod sets ``enableServiceLinks: false``): a Service named ``condense-gateway`` yields
    ``CONDENSE_GATEWAY_SERVICE_HOST``, ``CONDENSE_GATEWAY_PORT=tcp://10.0.0.7:8000`` and more,
    which share our prefix. Name and value must both fit, so that ``CONDENSE_GATEWAY_PORT=9000``
    (a mistyped ``CONDENSE_GATEWAY__PORT``) is still refused.
    """
    if not name.startswith("CONDENSE_") or "__" in name:
        return False
    # The Service's name may hold underscores itself (dashes become underscores), and may be just
    # "condense" (CONDENSE_SERVICE_HOST): every split into <service>_<suffix> is tried.
    for index, char in enumerate(name):
        if char != "_" or index < len("CONDENSE"):
            continue
        suffix = name[index + 1 :]
        if any(pattern.fullmatch(suffix) and valid(value) for pattern, valid in _SERVICE_LINK_SUFFIXES):
            return True
    return False


def _one_line(exc: ValidationError, path: str | os.PathLike[str] | None) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    source = f" in {path}" if path is not None else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {key}{source}: {message}{more}"


def example_yaml() -> str:
    """Every option with its default and description, as the shipped ``condense.example.yaml``."""
    lines = [
        "# condense settings. Every key is optional; the values shown are the defaults.",
        "# Environment variables CONDENSE_<SECTION>__<KEY> override this file,",
        "# e.g. CONDENSE_DATABASE__URL or CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS.",
        "",
    ]
    _render_model(Settings, Settings().model_dump(mode="json"), lines, indent=0)
    return "\n".join(lines) + "\n"


def _render_model(model: type[BaseModel], values: dict[str, Any], lines: list[str], indent: int) -> None:
    pad = "  " * indent
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{pad}{name}:")
            _render_model(annotation, values[name], lines, indent + 1)
            if indent == 0:
                lines.append("")
            continue
        if info.description:
            lines.append(f"{pad}# {info.description}")
        rendered = yaml.safe_dump({name: values[name]}, default_flow_style=True, width=1_000).strip()
        rendered = rendered.removeprefix("{").removesuffix("}")
        lines.append(f"{pad}{rendered}")
