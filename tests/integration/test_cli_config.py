"""`condense config show` and bad settings, through the real command in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_condense(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The developer's own CONDENSE_* variables must not change what these tests see.
    clean = {key: value for key, value in os.environ.items() if not key.startswith("CONDENSE_")}
    return subprocess.run(
        [sys.executable, "-m", "condense", *args],
        env={**clean, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("gateway:\n  micro_batch:\n    max_wiat_ms: 3\n", "gateway.micro_batch.max_wiat_ms"),
        ("kafka:\n  partitions: many\n", "kafka.partitions"),
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_a_bad_file_exits_2_with_one_line_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")

    result = run_condense("--config", str(bad), "config", "show")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"condense: invalid setting {key} in {bad}:")


def test_a_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_condense("--config", str(tmp_path / "absent.yaml"), "config", "show")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"condense: cannot read config file {tmp_path / 'absent.yaml'}: No such file or directory"
    ]


def test_a_bad_environment_value_exits_2_naming_the_variable_key() -> None:
    result = run_condense("config", "show", env={"CONDENSE_GATEWAY__PORT": "http"})

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("condense: invalid setting gateway.port:")


def test_config_show_json_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "condense.yaml"
    config.write_text(
        """
database:
  url: postgresql://condense:db-pass-123@db.internal:5432/condense
notifier:
  smtp:
    username: mailer
    password: smtp-pass-456
gateway:
  port: 9000
""",
        encoding="utf-8",
    )

    result = run_condense(
        "config",
        "show",
        "--json",
        env={"CONDENSE_CONFIG": str(config), "CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS": "7.5"},
    )

    assert result.returncode == 0, result.stderr
    assert "db-pass-123" not in result.stdout
    assert "smtp-pass-456" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["database"]["url"] == "postgresql://condense:***@db.internal:5432/condense"
    assert shown["notifier"]["smtp"]["username"] == "mailer"
    assert shown["notifier"]["smtp"]["password"] == "**********"
    # The file and the environment both reached the effective settings.
    assert shown["gateway"]["port"] == 9000
    assert shown["gateway"]["micro_batch"]["max_wait_ms"] == 7.5
    assert shown["kafka"]["compression_type"] == "lz4"


def _shown(stdout: str) -> dict[str, tuple[str, str]]:
    """key -> (value, comment) of each setting line of the readable `config show`."""
    lines: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        setting, _, comment = line.partition("  # ")
        key, _, value = setting.partition(" = ")
        lines[key.strip()] = (value.strip(), comment)
    return lines


def test_config_show_says_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "condense.yaml"
    config.write_text(
        "gateway:\n  port: 9000\nnotifier:\n  smtp:\n    password: smtp-pass-456\n"
        f"data_dir: {tmp_path / 'var'}\n",
        encoding="utf-8",
    )

    result = run_condense(
        "config",
        "show",
        env={"CONDENSE_CONFIG": str(config), "CONDENSE_WORKER__MAX_BATCH": "7"},
    )

    assert result.returncode == 0, result.stderr
    assert "smtp-pass-456" not in result.stdout
    shown = _shown(result.stdout)
    assert shown["gateway.port"] == ("9000", "file")
    assert shown["notifier.smtp.password"] == ("**********", "file")
    assert shown["worker.max_batch"] == ("7", "env CONDENSE_WORKER__MAX_BATCH")
    assert shown["kafka.compression_type"] == ("lz4", "default")
    # The broker address shown is one `condense dev` never uses: the line says so.
    value, comment = shown["kafka.bootstrap_servers"]
    assert value == "127.0.0.1:9092"
    assert comment.startswith("default; not used by condense dev")
    assert f"No `condense dev` runs from {tmp_path / 'var'}" in result.stdout


def test_config_show_prints_the_addresses_a_running_dev_stack_uses(tmp_path: Path) -> None:
    from condense.dev import DevLock

    data_dir = tmp_path / "var"
    data_dir.mkdir()
    lock = DevLock(data_dir)
    assert lock.acquire() is None
    lock.write(
        {
            "pid": 4242,
            "gateway": "http://127.0.0.1:8123",
            "broker": "127.0.0.1:40111",
            "metrics": {"relay": "127.0.0.1:40201", "worker": "127.0.0.1:40202", "notifier": "off"},
        }
    )
    try:
        result = run_condense("config", "show", env={"CONDENSE_DATA_DIR": str(data_dir)})
    finally:
        lock.release()

    assert result.returncode == 0, result.stderr
    shown = _shown(result.stdout)
    assert shown["kafka.bootstrap_servers"][1] == "default; condense dev uses its own broker, 127.0.0.1:40111"
    assert shown["gateway.port"][1] == "default; condense dev serves http://127.0.0.1:8123"
    assert shown["worker.metrics_port"][1] == "default; condense dev uses 127.0.0.1:40202"
    assert shown["data_dir"][1] == "env CONDENSE_DATA_DIR"
    assert f"# A `condense dev` (pid 4242) runs from {data_dir} and uses:" in result.stdout
    assert "#   broker    127.0.0.1:40111" in result.stdout


def test_commands_start_beside_kubernetes_service_links() -> None:
    # What kubelet adds to every pod for a Service named condense-gateway.
    links = {
        "CONDENSE_GATEWAY_SERVICE_HOST": "10.96.4.12",
        "CONDENSE_GATEWAY_SERVICE_PORT": "8000",
        "CONDENSE_GATEWAY_SERVICE_PORT_HTTP": "8000",
        "CONDENSE_GATEWAY_PORT": "tcp://10.96.4.12:8000",
        "CONDENSE_GATEWAY_PORT_8000_TCP": "tcp://10.96.4.12:8000",
        "CONDENSE_GATEWAY_PORT_8000_TCP_PROTO": "tcp",
        "CONDENSE_GATEWAY_PORT_8000_TCP_PORT": "8000",
        "CONDENSE_GATEWAY_PORT_8000_TCP_ADDR": "10.96.4.12",
    }

    result = run_condense("config", "show", "--json", env=links)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gateway"]["port"] == 8000


def test_a_mistyped_single_underscore_variable_exits_2_with_a_hint() -> None:
    result = run_condense("config", "show", env={"CONDENSE_GATEWAY_PORT": "9000"})

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "condense: invalid setting CONDENSE_GATEWAY_PORT: not a CONDENSE_<SECTION>__<KEY> variable; "
        "did you mean CONDENSE_GATEWAY__PORT?"
    ]


def test_keys_create_says_how_to_use_the_key_and_who_owns_older_jobs(tmp_path: Path) -> None:
    env = {"CONDENSE_DATABASE__URL": f"sqlite:///{tmp_path}/condense.db", "CONDENSE_GATEWAY__PORT": "8123"}
    assert run_condense("db", "upgrade", env=env).returncode == 0

    first = run_condense("keys", "create", "--tenant", "acme", env=env)

    assert first.returncode == 0, first.stderr
    key = next(line.split()[-1] for line in first.stdout.splitlines() if line.startswith("api key:"))
    assert f"Authorization: Bearer {key}" in first.stdout
    assert f"curl -s http://127.0.0.1:8123/v1/summaries -H 'Authorization: Bearer {key}'" in first.stdout
    assert f"export CONDENSE_API_KEY={key}" in first.stdout
    assert "--api-key" in first.stdout
    assert "This is the first key" in first.stdout
    assert "condense keys create --tenant default" in first.stdout

    second = run_condense("keys", "create", "--tenant", "beta", env=env)

    assert second.returncode == 0, second.stderr
    assert "Authorization: Bearer" in second.stdout
    assert "first key" not in second.stdout
