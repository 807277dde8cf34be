"""The chaos suite runs only when asked for (``make chaos``, or tests/chaos named on the command line).

Its drills start a whole stack and take its parts down, and its fuzzing runs for minutes, so
neither ``make test`` nor a bare ``pytest`` runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from schema.db import upgrade
from tests.chaos.harness import ChaosStack
from tests.fixtures.database import PgServer
from tests.fixtures.receivers import WebhookReceiver

CHAOS_DIR = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get("RUN_CHAOS") == "1":
        return True
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == CHAOS_DIR or CHAOS_DIR in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    chaos = [item for item in items if CHAOS_DIR in Path(item.path).parents]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if item not in chaos]


@pytest.fixture(scope="module")
def chaos_database(pg_server: PgServer) -> Iterator[tuple[str, str]]:
    """(name, URL) of a migrated PostgreSQL database of the drills' own."""
    name = pg_server.create_database()
    try:
        url = pg_server.url(name)
        upgrade(url)
        yield name, url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, chaos_database: tuple[str, str]
) -> Iterator[ChaosStack]:
    """One stack for every drill of a module: starting two workers costs more than a drill.

    Shorter timers than production's defaults, each one a knob an operator has: a crashed worker's
    jobs and a crashed notifier's claims come back within seconds rather than minutes, and a lane
    is taken for stalled after 15 s of silence rather than 30.
    """
    workdir = tmp_path_factory.mktemp("chaos")
    stack = ChaosStack(
        workdir,
        chaos_database[1],
        env={
            "CONDENSE_WORKER__HEARTBEAT_S": "3",
            "CONDENSE_WORKER__STALL_AFTER_S": "15",
            "CONDENSE_RELAY__RUNNING_TIMEOUT_S": "20",
            "CONDENSE_NOTIFIER__CLAIM_LEASE_S": "10",
            "CONDENSE_NOTIFIER__WEBHOOK_TIMEOUT_S": "5",
            "CONDENSE_NOTIFIER__SWEEP_INTERVAL_S": "1",
        },
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
