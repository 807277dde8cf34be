"""Drift: per-job statistics stored by the worker, windows compared with PSI and KS, the relay's
gauges, the alert rule's condition, and `condense drift report` (SQLite, the in-memory engine)."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from faker import Faker
from prometheus_client import REGISTRY
from sqlalchemy import Engine, insert

from condense.cli import main
from relay.drift import DriftMonitor
from schema import drift
from schema.db import make_engine
from schema.models import jobs_table, utcnow
from schema.settings import DriftSettings
from schema.store import drift as drift_store
from summarizer.testing import FakeSummarizer
from tests.builders import job_values
from tests.fixtures.gateway import make_settings
from workers.execution import JobExecutor
from workers.retry import RetryPolicy

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "condense-drift.yml"
POLICY = RetryPolicy(max_claims=3, max_retries=2, base_delay_s=30.0, max_delay_s=60.0, jitter=False)
PER_WINDOW = 40


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    return make_engine(make_settings(sqlite_url).database)


def documents(locale: str, count: int, seed: int) -> list[str]:
    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = random.Random(seed)
    return [" ".join(fake.paragraph(nb_sentences=rng.randint(6, 14)) for _ in range(3)) for _ in range(count)]


def run_jobs(engine: Engine, texts: list[str]) -> tuple[datetime, datetime]:
    """Submit and run the texts through the worker's executor; the window they finished in."""
    rows = [job_values(input_text=text, params={"max_sentences": 3}) for text in texts]
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), rows)
    start = utcnow()
    executor = JobExecutor(
        engine, FakeSummarizer(), policy=POLICY, topic_for={"interactive": "j", "bulk": "b"}
    )
    outcome = executor.run([row["id"] for row in rows])
    assert len(outcome.succeeded) == len(texts)
    return start, utcnow()


def alert_fires(model: str) -> bool:
    """The CondenseInputLanguageDrift condition, evaluated on the relay's exported gauges."""
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = [r for r in group["rules"] if r["alert"] == "CondenseInputLanguageDrift"]
    match = re.fullmatch(r'(condense_drift_psi)\{statistic="(\w+)"\} > ([\d.]+)', rule["expr"].strip())
    assert match, rule["expr"]
    metric, statistic, threshold = match.group(1), match.group(2), float(match.group(3))
    value = REGISTRY.get_sample_value(metric, {"model": model, "statistic": statistic})
    assert value is not None, "the relay exported no language PSI"
    return value > threshold


def monitor_at(
    engine: Engine, reference: tuple[datetime, datetime], current: tuple[datetime, datetime]
) -> DriftMonitor:
    settings = DriftSettings(
        window_s=(current[1] - current[0]).total_seconds(),
        reference_s=(reference[1] - reference[0]).total_seconds()
        + (current[0] - reference[1]).total_seconds(),
        min_jobs=PER_WINDOW // 2,
    )
    return DriftMonitor(settings, engine)


@pytest.mark.parametrize("second_half", ["en_US", "de_DE"])
def test_a_language_change_halfway_fires_the_alert_and_an_unchanged_stream_does_not(
    engine: Engine, second_half: str
) -> None:
    reference = run_jobs(engine, documents("en_US", PER_WINDOW, seed=1))
    current = run_jobs(engine, documents(second_half, PER_WINDOW, seed=2))
    model = FakeSummarizer().info.name

    with engine.connect() as conn:
        stored = drift_store.window(conn, reference[0], current[1])[model]
    assert len(stored) == 2 * PER_WINDOW
    first = [s for s in stored if s.finished_at < reference[1]]
    assert sum(s.language == "en" for s in first) >= 0.8 * PER_WINDOW
    assert all(s.compression_ratio > 0 and s.summary_chars > 0 and s.input_chars > 0 for s in stored)

    report = monitor_at(engine, reference, current).update(current[1])
    (figures,) = report
    assert (figures.reference_jobs, figures.current_jobs) == (PER_WINDOW, PER_WINDOW)
    language = next(s for s in figures.stats if s.statistic == "language")
    changed = second_half != "en_US"
    assert alert_fires(model) is changed
    assert language.moved is changed
    assert ("language" in figures.moved) is changed
    if changed:
        assert language.psi > 1.0
    else:
        assert language.psi < 0.05


def test_drift_report_cli_compares_two_windows(
    engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = run_jobs(engine, documents("en_US", PER_WINDOW, seed=3))
    current = run_jobs(engine, documents("de_DE", PER_WINDOW, seed=4))
    monkeypatch.setenv("CONDENSE_DATABASE__URL", sqlite_url)
    monkeypatch.setenv("CONDENSE_GOVERNANCE__DRIFT__MIN_JOBS", "10")
    args = [
        "drift",
        "report",
        "--since",
        current[0].isoformat(),
        "--until",
        current[1].isoformat(),
        "--against",
        f"{reference[0].isoformat()}..{reference[1].isoformat()}",
    ]
    assert main(args) == 3
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("language"))
    assert "MOVED" in line
    assert main([*args, "--json"]) == 3
    assert '"language"' in capsys.readouterr().out
    same = ["drift", "report", "--since", reference[0].isoformat(), "--until", reference[1].isoformat()]
    assert main([*same, "--against", f"{reference[0].isoformat()}..{reference[1].isoformat()}"]) == 0


def test_the_relay_backfills_jobs_answered_on_the_sync_path(engine: Engine) -> None:
    now = utcnow()
    row = job_values(
        input_text="A short text. It was answered at once.",
        status="succeeded",
        route="sync",
        summary="A short text.",
        language="en",
        input_tokens=9,
        model={"name": "sync-model"},
        params={"max_sentences": 1},
        finished_at=now,
    )
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [row])
    settings = DriftSettings(window_s=60, reference_s=60, min_jobs=1)
    DriftMonitor(settings, engine).update(now + timedelta(seconds=1))
    with engine.connect() as conn:
        (stats,) = drift_store.window(conn, now - timedelta(seconds=1), now + timedelta(seconds=1))[
            "sync-model"
        ]
    assert stats.job_id == row["id"] and stats.language == "en" and stats.hit_length_limit
    assert stats.unknown_token_share is None
    assert (
        REGISTRY.get_sample_value("condense_drift_window_jobs", {"model": "sync-model", "window": "current"})
        == 1
    )
    # Already there: the next round adds nothing.
    with engine.begin() as conn:
        assert drift_store.backfill(conn, now - timedelta(seconds=10)) == 0


def test_statistics() -> None:
    assert drift.redundancy("the cat sat. the cat sat. the cat sat.") > 0.5
    assert drift.redundancy("one two three four five") == 0.0
    assert drift.hit_length_limit("A. B. C.", {"max_sentences": 3}, None)
    assert not drift.hit_length_limit("A. B.", {"max_sentences": 3}, None)
    assert drift.hit_length_limit("x " * 40, {"max_words": 40}, None)
    assert drift.hit_length_limit("...", {"max_new_tokens": 64}, 63)
    rng = random.Random(0)
    same_a = [rng.gauss(0, 1) for _ in range(500)]
    same_b = [rng.gauss(0, 1) for _ in range(500)]
    shifted = [rng.gauss(1, 1) for _ in range(500)]
    assert drift.psi_numeric(same_a, same_b) < 0.1
    assert drift.psi_numeric(same_a, shifted) > 0.2
    d_same, p_same = drift.ks_two_sample(same_a, same_b)
    d_shift, p_shift = drift.ks_two_sample(same_a, shifted)
    assert d_same < 0.1 and p_same > 0.01
    assert d_shift > 0.3 and p_shift < 1e-6
    assert drift.psi_categorical(["en"] * 50, ["en"] * 50) == 0.0
