"""The per-layer table at the end of a run counts each layer's outcomes and time apart."""

from __future__ import annotations

from types import SimpleNamespace

from tests.fixtures.report import layer_of, layer_table


def report(nodeid: str, when: str, duration: float) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, when=when, duration=duration)


def test_layers_come_from_the_test_path() -> None:
    assert layer_of("tests/unit/test_cache.py::test_x") == "unit"
    assert layer_of("tests/integration/test_consumer.py::test_y[param/with/slash]") == "integration"
    assert layer_of("tests/e2e/test_pipeline.py") == "e2e"
    assert layer_of("benchmarks/test_z.py::test_z") == "other"


def test_outcomes_and_seconds_are_summed_per_layer() -> None:
    unit, slow = "tests/unit/test_a.py::test_a", "tests/integration/test_b.py::test_b"
    stats = {
        "": [report(unit, "setup", 0.25), report(unit, "teardown", 0.25), report(slow, "setup", 3.0)],
        "passed": [report(unit, "call", 0.5)],
        "failed": [report(slow, "call", 1.0)],
        "error": [report(slow, "teardown", 2.0), report("tests/e2e/test_c.py", "collect", 0.0)],
        "skipped": [report("tests/unit/test_d.py::test_d", "setup", 0.0)],
        # Neither counts: a warning and a deselected item are no outcome of a test.
        "warnings": [SimpleNamespace(nodeid=unit, message="w")],
        "deselected": [SimpleNamespace(nodeid="tests/e2e/test_e.py::test_e")],
    }

    header, *rows = layer_table(stats)

    assert header.split() == ["layer", "passed", "failed", "skipped", "error", "seconds"]
    assert [row.split() for row in rows] == [
        ["unit", "1", "0", "1", "0", "1.0"],
        ["integration", "0", "1", "0", "1", "6.0"],
        ["e2e", "0", "0", "0", "1", "0.0"],
    ]


def test_no_reports_no_table() -> None:
    assert layer_table({"warnings": [SimpleNamespace(nodeid="", message="w")]}) == []
