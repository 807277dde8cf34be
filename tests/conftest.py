"""Run-wide reporting; the service fixtures are registered by the repository's root conftest.py."""

from __future__ import annotations

import pytest

from tests.fixtures.report import layer_table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = layer_table(terminalreporter.stats)
    if lines:
        terminalreporter.write_sep("-", "per layer")
        for line in lines:
            terminalreporter.write_line(line)
