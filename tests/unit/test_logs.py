"""JSON log lines: the fields operators search by, exceptions, and records that carry odd extras."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from condense.logs import ComponentFilter, JsonFormatter, configure_logging
from schema.settings import LoggingSettings


def _record(message: str = "job %s stored", *args: object, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("condense.test")
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, args or ("j-1",), None, extra=extra
    )
    return record


def _line(record: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter().format(record)
    assert "\n" not in text, "one record must stay one line"
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_fields_and_context() -> None:
    line = _line(
        _record(
            job_id="j-1",
            tenant="acme",
            batch_id="b-1",
            component="worker",
            status="failed",
            error_code="invalid_document",
            duration_s=1.25,
        )
    )
    assert line["message"] == "job j-1 stored"
    assert line["level"] == "INFO"
    assert line["logger"] == "condense.test"
    assert line["ts"].endswith("+00:00")
    assert {k: line[k] for k in ("job_id", "tenant", "batch_id", "component")} == {
        "job_id": "j-1",
        "tenant": "acme",
        "batch_id": "b-1",
        "component": "worker",
    }
    assert (line["status"], line["error_code"], line["duration_s"]) == ("failed", "invalid_document", 1.25)


def test_absent_context_is_left_out_and_unknown_extras_never_leak() -> None:
    line = _line(_record(job_id="j-1", batch_id=None, text="the whole document", secret="whsec_x"))
    assert "batch_id" not in line and "tenant" not in line
    assert "the whole document" not in json.dumps(line)
    assert "whsec_x" not in json.dumps(line)


def test_exception_text_is_included() -> None:
    try:
        raise RuntimeError("the broker went away")
    except RuntimeError:
        record = logging.getLogger("condense.test").makeRecord(
            "condense.test", logging.WARNING, __file__, 1, "relay: %s", ("boom",), sys.exc_info()
        )
    line = _line(record)
    assert line["level"] == "WARNING"
    assert "Traceback" in line["exc"]
    assert "RuntimeError: the broker went away" in line["exc"]


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"\xff\x00raw", "b'\\xff\\x00raw'"),
        (float("nan"), "nan"),
        (("a", 1), "('a', 1)"),
        (_Unprintable(), "<unprintable _Unprintable>"),
        (12, 12),
        (True, True),
    ],
    ids=["bytes", "nan", "tuple", "broken-str", "int", "bool"],
)
def test_odd_extras_do_not_break_the_line(value: object, expected: object) -> None:
    assert _line(_record(job_id=value))["job_id"] == expected


def test_circular_extra_does_not_break_the_line() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert _line(_record(tenant=loop))["tenant"] == "[[...]]"


def test_mismatched_arguments_keep_the_line() -> None:
    line = _line(_record("job %s took %d s", "j-1"))
    assert line["message"].startswith("job %s took %d s")
    assert "j-1" in line["message"]


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restored_root")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_logging_stamps_the_component(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(LoggingSettings(format=fmt, level="INFO"), "relay")  # type: ignore[arg-type]
    logging.getLogger("some.library").info("published %d", 3)
    logging.getLogger("condense.test").info("mine", extra={"component": "override"})
    with warnings.catch_warnings():
        # Libraries imported by earlier tests may have filtered UserWarning away globally.
        warnings.simplefilter("always")
        warnings.warn_explicit("deprecated knob", UserWarning, "lib.py", 7)
    first, second, third = [line for line in stream.getvalue().splitlines() if line]
    if fmt == "json":
        assert json.loads(first)["component"] == "relay"
        assert json.loads(first)["message"] == "published 3"
        assert json.loads(second)["component"] == "override"
        warning = json.loads(third)
        assert (warning["logger"], warning["component"]) == ("py.warnings", "relay")
        assert "deprecated knob" in warning["message"]
    else:
        assert " relay INFO some.library: published 3" in first
        assert " relay WARNING py.warnings: " in third


def test_filter_keeps_every_record() -> None:
    record = _record()
    assert ComponentFilter("notifier").filter(record) is True
    assert record.component == "notifier"  # type: ignore[attr-defined]
