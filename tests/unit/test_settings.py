"""Settings: defaults, the YAML file, CONDENSE_* variables on top, and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.errors import ConfigError
from schema.settings import Settings, is_service_link, load_settings


def write(tmp_path: Path, text: str, name: str = "condense.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(None, environ={})

    assert settings == Settings()
    assert settings.database.url == "sqlite:///var/condense.db"
    assert settings.kafka.compression_type == "lz4"
    assert settings.gateway.micro_batch.max_batch == 16
    assert settings.notifier.smtp.password is None


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "# nothing set\n"), environ={}) == Settings()


def test_file_values_are_used_and_the_rest_stays_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
database:
  url: postgresql://condense:s3cret@db.internal:5432/condense
gateway:
  port: 9000
  micro_batch:
    max_wait_ms: 2.5
notifier:
  retry_schedule_s: [1, 2, 3]
  smtp:
    password: mail-pass
""",
    )

    settings = load_settings(path, environ={})

    assert settings.database.url == "postgresql://condense:s3cret@db.internal:5432/condense"
    assert settings.gateway.port == 9000
    assert settings.gateway.micro_batch.max_wait_ms == 2.5
    assert settings.gateway.micro_batch.max_batch == 16
    assert settings.notifier.retry_schedule_s == [1.0, 2.0, 3.0]
    assert settings.notifier.smtp.password is not None
    assert settings.notifier.smtp.password.get_secret_value() == "mail-pass"
    assert settings.kafka == Settings().kafka


def test_environment_wins_over_the_file_and_merges_into_nested_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
gateway:
  port: 9000
  host: 127.0.0.2
  micro_batch:
    max_batch: 4
    max_wait_ms: 2.5
""",
    )

    settings = load_settings(
        path,
        environ={
            "CONDENSE_GATEWAY__PORT": "9001",
            "CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS": "7.5",
            "CONDENSE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        },
    )

    assert settings.gateway.port == 9001
    assert settings.gateway.micro_batch.max_wait_ms == 7.5
    # A variable overrides one key; its file siblings must survive.
    assert settings.gateway.host == "127.0.0.2"
    assert settings.gateway.micro_batch.max_batch == 4
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"


def test_environment_lists_are_json(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"CONDENSE_NOTIFIER__RETRY_SCHEDULE_S": "[1, 2.5]"})

    assert settings.notifier.retry_schedule_s == [1.0, 2.5]


def test_condense_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  max_batch: 7\n")

    settings = load_settings(None, environ={"CONDENSE_CONFIG": str(path)})

    assert settings.worker.max_batch == 7


def test_an_explicit_path_wins_over_condense_config(tmp_path: Path) -> None:
    named = write(tmp_path, "worker:\n  max_batch: 7\n", "named.yaml")
    explicit = write(tmp_path, "worker:\n  max_batch: 9\n", "explicit.yaml")

    settings = load_settings(explicit, environ={"CONDENSE_CONFIG": str(named)})

    assert settings.worker.max_batch == 9


def test_an_explicit_environment_replaces_the_process_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDENSE_GATEWAY__PORT", "1234")

    settings = load_settings(None, environ={"CONDENSE_WORKER__MAX_BATCH": "3"})

    assert settings.gateway.port == 8000
    assert settings.worker.max_batch == 3
    # The temporary swap must leave the real environment exactly as it was.
    assert os.environ["CONDENSE_GATEWAY__PORT"] == "1234"
    assert "CONDENSE_WORKER__MAX_BATCH" not in os.environ


def test_the_process_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [key for key in os.environ if key.startswith("CONDENSE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CONDENSE_GATEWAY__PORT", "1234")

    assert load_settings().gateway.port == 1234


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("database:\n  pool_sise: 3\n", "database.pool_sise", "unknown key"),
        ("databse:\n  url: sqlite://\n", "databse", "unknown key"),
        ("gateway:\n  port: eighty\n", "gateway.port", "valid integer"),
        ("gateway:\n  micro_batch:\n    max_batch: 0\n", "gateway.micro_batch.max_batch", "greater than"),
        ("kafka:\n  compression_type: zstd\n", "kafka.compression_type", "'lz4'"),
        ("gateway: 5\n", "gateway", "dictionary"),
        ("data_dir: '  '\n", "data_dir", "must not be empty"),
    ],
)
def test_bad_file_values_name_the_key_in_one_line(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    message = str(caught.value)
    assert "\n" not in message
    assert f"invalid setting {key} in {path}:" in message
    assert reason in message
    # A permanent error: retrying the same file cannot help.
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("environ", "key", "reason"),
    [
        ({"CONDENSE_GATEWAY__PORT": "eighty"}, "gateway.port", "valid integer"),
        ({"CONDENSE_DATABASE__POOL_SISE": "3"}, "database.pool_sise", "unknown key"),
        ({"CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS": "-1"}, "gateway.micro_batch.max_wait_ms", "greater"),
    ],
)
def test_bad_environment_values_name_the_key_in_one_line(
    environ: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=environ)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid setting {key}:")
    assert reason in message


def test_several_errors_are_counted_not_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  port: eighty\n  host_name: x\n  max_text_bytes: 0\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("(and 2 more)")


def test_unreadable_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  port: 80\n  host: [unclosed\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert str(caught.value) == f"config file {path} is not valid YAML at line 4"


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("just words\n", "str")])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert str(caught.value) == f"config file {path} must hold a mapping of sections, not {kind}"


def test_a_missing_file_is_an_error_not_defaults(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert str(caught.value) == f"cannot read config file {path}: No such file or directory"


def test_a_missing_file_named_by_condense_config_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(None, environ={"CONDENSE_CONFIG": str(path)})


def test_masked_hides_passwords_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
database:
  url: postgresql://condense:db-pass@db.internal:5432/condense
celery:
  broker_url: redis://:redis-pass@cache.internal:6379/0
cache:
  backend: redis
  redis_url: redis://front:front-pass@hot.internal:6379/1
notifier:
  webhook_secrets: [whsec_c2VjcmV0]
  smtp:
    username: mailer
    password: mail-pass
""",
    )

    masked = load_settings(path, environ={}).masked()

    rendered = repr(masked)
    for secret in ("db-pass", "redis-pass", "front-pass", "mail-pass", "whsec_c2VjcmV0"):
        assert secret not in rendered
    assert masked["database"]["url"] == "postgresql://condense:***@db.internal:5432/condense"
    assert masked["celery"]["broker_url"] == "redis://:***@cache.internal:6379/0"
    assert masked["cache"]["redis_url"] == "redis://front:***@hot.internal:6379/1"
    assert masked["notifier"]["smtp"]["username"] == "mailer"
    assert masked["notifier"]["smtp"]["password"] == "**********"


# Kubernetes service links: what kubelet gives a pod for a Service named condense-gateway (and one
# named just condense), with a cluster IP of either family.
SERVICE_LINKS = {
    "CONDENSE_GATEWAY_SERVICE_HOST": "10.96.4.12",
    "CONDENSE_GATEWAY_SERVICE_PORT": "8000",
    "CONDENSE_GATEWAY_SERVICE_PORT_HTTP": "8000",
    "CONDENSE_GATEWAY_PORT": "tcp://10.96.4.12:8000",
    "CONDENSE_GATEWAY_PORT_8000_TCP": "tcp://10.96.4.12:8000",
    "CONDENSE_GATEWAY_PORT_8000_TCP_PROTO": "tcp",
    "CONDENSE_GATEWAY_PORT_8000_TCP_PORT": "8000",
    "CONDENSE_GATEWAY_PORT_8000_TCP_ADDR": "10.96.4.12",
    "CONDENSE_SERVICE_HOST": "fd00:10:96::4c",
    "CONDENSE_SERVICE_PORT": "5353",
    "CONDENSE_SERVICE_PORT_DNS_UDP": "5353",
    "CONDENSE_PORT": "udp://[fd00:10:96::4c]:5353",
    "CONDENSE_PORT_5353_UDP": "udp://[fd00:10:96::4c]:5353",
    "CONDENSE_PORT_5353_UDP_PROTO": "udp",
    "CONDENSE_PORT_5353_UDP_PORT": "5353",
    "CONDENSE_PORT_5353_UDP_ADDR": "fd00:10:96::4c",
    # A Service whose own name holds the word PORT.
    "CONDENSE_PORT_MAP_SERVICE_HOST": "10.96.0.9",
    "CONDENSE_PORT_MAP_PORT_9_SCTP_PORT": "9",
}


def test_kubernetes_service_links_are_ignored() -> None:
    settings = load_settings(None, environ={**SERVICE_LINKS, "CONDENSE_GATEWAY__PORT": "8001"})

    assert settings == Settings(gateway={"port": 8001})


@pytest.mark.parametrize("name", sorted(SERVICE_LINKS))
def test_each_service_link_is_recognised_by_name_and_value(name: str) -> None:
    assert is_service_link(name, SERVICE_LINKS[name])
    # The same name with a value kubelet would never write is somebody's mistake.
    assert not is_service_link(name, "yes")


@pytest.mark.parametrize(
    ("environ", "hint"),
    [
        # Looks like a link by name, but a link's value is tcp://IP:PORT: a mistyped setting.
        ({"CONDENSE_GATEWAY_PORT": "9000"}, "did you mean CONDENSE_GATEWAY__PORT?"),
        ({"CONDENSE_GATEWAY_SERVICE_HOST": "gateway.internal"}, "did you mean CONDENSE_SECTION__KEY?"),
        (
            {"CONDENSE_GATEWAY_MICRO_BATCH_MAX_WAIT_MS": "3"},
            "did you mean CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS?",
        ),
        ({"CONDENSE_WORKER_METRICS_HOST": "0.0.0.0"}, "did you mean CONDENSE_WORKER__METRICS_HOST?"),
        ({"CONDENSE_VERBOSE": "1"}, "did you mean CONDENSE_SECTION__KEY?"),
    ],
)
def test_a_single_underscore_variable_is_refused_with_a_hint(environ: dict[str, str], hint: str) -> None:
    (name,) = environ

    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**SERVICE_LINKS, **environ})

    message = str(caught.value)
    assert message.startswith(f"invalid setting {name}: not a CONDENSE_<SECTION>__<KEY> variable")
    assert message.endswith(hint)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "CONDENSE_DATABSE__URL",
            "invalid setting CONDENSE_DATABSE__URL: unknown section 'databse'; "
            "did you mean CONDENSE_DATABASE__URL?",
        ),
        ("CONDENSE_NOPE__URL", "invalid setting CONDENSE_NOPE__URL: unknown section 'nope'"),
    ],
)
def test_a_mistyped_section_is_refused_even_beside_service_links(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**SERVICE_LINKS, name: "sqlite://"})

    assert str(caught.value) == message


def test_top_level_keys_and_client_variables_are_not_mistakes(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        environ={"CONDENSE_DATA_DIR": str(tmp_path), "CONDENSE_API_KEY": "cnd_x", "CONDENSE_BENCH_PG": "pg"},
    )

    assert settings.data_dir == str(tmp_path)


def test_metrics_servers_listen_on_loopback_unless_configured() -> None:
    settings = load_settings(None, environ={"CONDENSE_RELAY__METRICS_HOST": "0.0.0.0"})

    assert settings.worker.metrics_host == "127.0.0.1"
    assert settings.notifier.metrics_host == "127.0.0.1"
    assert settings.relay.metrics_host == "0.0.0.0"
