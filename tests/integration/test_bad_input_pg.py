"""The bad-input battery of tests/unit/test_bad_input_battery.py on PostgreSQL, which is stricter
than SQLite (NUL in text, column lengths, JSON): every case is a 4xx and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schema.db import upgrade
from tests.fixtures.bad_input import BATTERY, Bad, World, check_refused, hostile_world, snapshot
from tests.fixtures.database import PgServer


@pytest.fixture(scope="module")
def world(pg_server: PgServer) -> Iterator[World]:
    # One database and gateway for the module (a database per case would cost a second each);
    # every case compares against the snapshot taken just before it.
    name = pg_server.create_database()
    try:
        url = pg_server.url(name)
        upgrade(url)
        with hostile_world(url) as seeded:
            yield seeded
    finally:
        pg_server.drop_database(name)


@pytest.mark.parametrize("case", BATTERY, ids=lambda case: case.name)
def test_bad_input_is_refused_and_writes_nothing_on_postgresql(world: World, case: Bad) -> None:
    before = snapshot(world.url)
    check_refused(case, case.send(world))
    assert snapshot(world.url) == before, case.name
