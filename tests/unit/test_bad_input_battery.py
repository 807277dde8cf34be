"""Over a hundred hand-made bad requests across every /v1 endpoint, on SQLite: each is a 4xx in the
common error shape and writes nothing (the same battery runs on PostgreSQL in
tests/integration/test_bad_input_pg.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schema.db import upgrade
from tests.fixtures.bad_input import BATTERY, Bad, World, check_refused, hostile_world, snapshot


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One gateway for the whole battery: each case is checked against the snapshot taken just
    # before it, so sharing the database hides nothing.
    path: Path = tmp_path_factory.mktemp("battery") / "condense.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    with hostile_world(url) as seeded:
        yield seeded


def test_the_battery_is_large_and_covers_every_v1_route(world: World) -> None:
    assert len(BATTERY) >= 100
    assert len({case.name for case in BATTERY}) == len(BATTERY), "case names must be unique"
    documented = {
        (method.upper(), path)
        for path, operations in world.client.get("/openapi.json").json()["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }
    hit = {(case.method, _template(case.path)) for case in BATTERY}
    assert documented <= hit, f"routes the battery never tries: {sorted(documented - hit)}"


def _template(path: str) -> str:
    """The OpenAPI path a battery path is sent to."""
    parts = path.split("?", 1)[0].split("/")
    names = {"summaries": "job_id", "batches": "batch_id", "deliveries": "delivery_id"}
    for index in range(3, len(parts)):
        if parts[index - 1] in names and index == 3:
            parts[index] = "{" + names[parts[index - 1]] + "}"
    return "/".join(parts)


@pytest.mark.parametrize("case", BATTERY, ids=lambda case: case.name)
def test_bad_input_is_refused_and_writes_nothing(world: World, case: Bad) -> None:
    before = snapshot(world.url)
    check_refused(case, case.send(world))
    assert snapshot(world.url) == before, case.name
