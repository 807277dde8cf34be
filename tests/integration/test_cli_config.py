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


def test_config_show_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
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
