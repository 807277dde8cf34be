"""Chaos drills: under a steady stream of submits, break one part of a running stack, bring it back,
and prove that every accepted job finished exactly once, in time, and was notified.

Each drill prints one line of counts (``make chaos`` shows them):

    chaos <drill>: submitted=.. finished=.. stuck=.. duplicated=.. lost=.. failed=.. undelivered=..

``stuck``: jobs that waited more than 60 s beyond their own processing time; ``duplicated``: jobs
with more than one finish event on record, or whose client received more than one distinct event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.chaos.harness import (
    WORKERS,
    ChaosStack,
    DrillCounts,
    Load,
    count,
    database_outage,
    engine_for,
    restart_server,
    server_restart_refusal,
)
from tests.fixtures.database import PgServer
from tests.fixtures.receivers import WebhookReceiver

pytestmark = pytest.mark.slow

RATE_PER_S = 2.0
# Submits before the fault, while the part is down, and after it is back.
WARM_S = 6.0
DOWN_S = 3.0
AFTER_S = 12.0
# Longest the drill waits for the last jobs and webhooks once submits stopped.
DRAIN_S = 150.0
_RECOVERY_MARKS = ("rejoining the group", "past the end of the log", "running them from the database")


@pytest.fixture(scope="module")
def engine(chaos_database: tuple[str, str]) -> Iterator[Engine]:
    engine = engine_for(chaos_database[1])
    try:
        yield engine
    finally:
        engine.dispose()


def _log_sizes(stack: ChaosStack) -> dict[str, int]:
    return {name: _log(stack, name).stat().st_size if _log(stack, name).exists() else 0 for name in WORKERS}


def _log(stack: ChaosStack, name: str) -> Path:
    return stack.stack.child(name).log_path


def _recoveries_since(stack: ChaosStack, sizes: dict[str, int]) -> int:
    """Consumer recoveries the workers logged since ``sizes`` (their counters restart with them)."""
    found = 0
    for name, size in sizes.items():
        with _log(stack, name).open("rb") as log:
            log.seek(size)
            text = log.read().decode(errors="replace")
        found += sum(text.count(mark) for mark in _RECOVERY_MARKS)
    return found


def run_drill(
    name: str,
    stack: ChaosStack,
    receiver: WebhookReceiver,
    engine: Engine,
    fault: Callable[[], None],
) -> DrillCounts:
    stack.wait_ready()
    sizes = _log_sizes(stack)
    hook = {"url": receiver.url, "secret": receiver.secret}
    began = time.monotonic()
    with Load(stack.base_url, hook, name, RATE_PER_S) as load:
        time.sleep(WARM_S)
        fault()
        time.sleep(AFTER_S)
    counts = count(name, engine, receiver, load, drain_s=DRAIN_S)
    # Read after the drain: recoveries from the stall a fault left behind happen while it drains.
    counts.recoveries = _recoveries_since(stack, sizes)
    # The figures are the drill's report, wanted on success too (make chaos runs pytest -s).
    print(f"\n{counts.line()} drill_s={time.monotonic() - began:.0f}", flush=True)  # noqa: T201
    problems = {
        key: value
        for key, value in (
            ("lost", counts.lost),
            ("duplicated", counts.duplicated),
            ("stuck", counts.stuck),
            ("failed", counts.failed),
            ("undelivered", counts.undelivered),
        )
        if value
    }
    assert counts.submitted > 0, f"no submit was accepted: {counts.refusals}"
    assert not problems, f"{counts.line()} {counts.notes}\n{stack.logs()}"
    # The next drill starts from a whole stack.
    stack.wait_ready()
    return counts


@pytest.mark.parametrize("component", ["gateway", "relay", "worker-0", "worker-1", "notifier"])
def test_a_component_killed_and_restarted_loses_nothing(
    component: str, chaos_stack: ChaosStack, receiver: WebhookReceiver, engine: Engine
) -> None:
    def kill_and_restart() -> None:
        chaos_stack.kill(component)
        time.sleep(DOWN_S)
        chaos_stack.restart(component)

    run_drill(f"kill-{component}", chaos_stack, receiver, engine, kill_and_restart)


def test_a_broker_restarted_with_empty_storage_loses_nothing(
    chaos_stack: ChaosStack, receiver: WebhookReceiver, engine: Engine
) -> None:
    def restart_empty() -> None:
        # Memory storage: the broker comes back without topics, offsets or groups.
        chaos_stack.kill("broker")
        chaos_stack.restart("broker")

    run_drill("broker-restart-empty", chaos_stack, receiver, engine, restart_empty)


def test_a_database_outage_loses_nothing(
    chaos_stack: ChaosStack,
    receiver: WebhookReceiver,
    engine: Engine,
    pg_server: PgServer,
    chaos_database: tuple[str, str],
) -> None:
    # Only the drills' own database goes away, so other sessions on the shared server are untouched.
    run_drill(
        "database-outage",
        chaos_stack,
        receiver,
        engine,
        lambda: database_outage(pg_server, chaos_database[0], DOWN_S),
    )


def test_a_postgresql_server_restart_loses_nothing(
    chaos_stack: ChaosStack, receiver: WebhookReceiver, engine: Engine, pg_server: PgServer
) -> None:
    refusal = server_restart_refusal()
    if refusal is not None:
        pytest.skip(refusal)
    run_drill("postgresql-restart", chaos_stack, receiver, engine, lambda: restart_server(pg_server))
