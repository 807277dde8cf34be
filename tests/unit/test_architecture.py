"""The package rules of DEVELOPERS.md, checked on the source so that a change cannot drift from them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "schema", "summarizer", "gateway", "relay", "workers", "notifier", "condense")
# Who may import whom. condense/ sits above everything (it starts every component).
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "summarizer": {"common"},
    "schema": {"common", "summarizer"},
    "gateway": {"common", "schema", "summarizer"},
    "relay": {"common", "schema"},
    "workers": {"common", "schema", "summarizer"},
    "notifier": {"common", "schema"},
    "condense": set(PACKAGES),
}
# Tables whose rows only the job store writes.
STORE_TABLES = ("jobs_table", "batches_table", "outbox_table", "deliveries_table", "attempts_table")
STORE_MODELS = ("SummaryJob", "Batch", "OutboxEntry", "NotificationDelivery", "DeliveryAttempt")
_TABLE = "|".join(STORE_TABLES + STORE_MODELS + ("_JOBS", "_BATCHES", "_OUTBOX", "_DELIVERIES", "_ATTEMPTS"))
WRITES = re.compile(rf"\b(?:insert|update|delete)\((?:{_TABLE})\b|\b(?:{_TABLE})\.(?:insert|update|delete)\(")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Project modules imported anywhere in the file, including inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES}


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_packages_import_only_what_they_may(module: str) -> None:
    package = module.split(".")[0]
    others = {name.split(".")[0] for name in imports_of(MODULES[module])} - {package}
    assert others <= ALLOWED[package], f"{module} imports {sorted(others - ALLOWED[package])}"


def test_no_import_cycle_between_modules() -> None:
    graph = {
        module: {name for name in imports_of(path) if name in MODULES and name != module}
        for module, path in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target) :], target] if target in trail else [module, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize(
    "module",
    sorted(name for name in MODULES if not name.startswith("schema.store") and name != "schema.models"),
)
def test_only_the_store_writes_job_rows(module: str) -> None:
    writes = WRITES.findall(MODULES[module].read_text())
    assert not writes, f"{module} writes store tables directly: {writes}"


def test_the_write_rule_sees_every_form_of_write() -> None:
    for statement in (
        "insert(jobs_table)",
        "update(SummaryJob).where(x)",
        "_OUTBOX.delete()",
        "delete(_DELIVERIES)",
    ):
        assert WRITES.search(statement), statement
    assert not WRITES.search("select(jobs_table)")
