"""``condense eval`` on the sets shipped in data/eval, with the in-memory summarizer for speed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from condense.cli import build_parser
from schema.settings import Settings
from summarizer import cli as summarizer_cli
from summarizer.evaluation import SHIPPED_DIR, load_eval_set, shipped_set
from summarizer.testing import FakeSummarizer


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summarizer_cli, "load_summarizer", lambda _settings: FakeSummarizer())


def condense_eval(*argv: str) -> int:
    args = build_parser().parse_args(["eval", *argv])
    code: int = args.handler(Settings(), args)
    return code


def table_rows(out: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def test_eval_with_no_arguments_prints_one_table_of_both_shipped_sets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert condense_eval("--limit", "3", "--words", "60") == 0
    out = capsys.readouterr().out
    assert out.startswith("ROUGE F1 x100, 60-word budget")
    assert out.count("| set | docs | system | R1 | R2 | RL |") == 1
    rows = table_rows(out)
    assert [(row[0], row[2]) for row in rows] == [
        (name, system)
        for name in ("peps", "keps")
        for system in (
            "lead",
            "textrank-tfidf",
            "fake-extractive (fake)",
            "margin over the better baseline",
        )
    ]
    assert {row[1] for row in rows} == {"3"}
    for name in ("peps", "keps"):
        lead, textrank, model, margin = (row for row in rows if row[0] == name)
        for column in (4, 5):  # R2, RL
            best = max(float(lead[column]), float(textrank[column]))
            assert float(margin[column]) == pytest.approx(float(model[column]) - best, abs=0.011)
        assert margin[3] == ""


def test_eval_of_one_named_set_and_of_files_plain_or_gzipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert condense_eval("--set", "keps", "--limit", "2") == 0
    assert {row[0] for row in table_rows(capsys.readouterr().out)} == {"keps"}

    records = [
        {"id": "a", "document": "Workers pull jobs in batches. They store results.", "reference": "Workers."},
        {
            "id": "b",
            "document": "The gateway answers short texts at once. Long ones wait.",
            "reference": "Gateway.",
        },
    ]
    lines = "".join(json.dumps(record) + "\n" for record in records)
    plain = tmp_path / "mine.jsonl"
    plain.write_text(lines, encoding="utf-8")
    packed = tmp_path / "theirs.jsonl.gz"
    packed.write_bytes(gzip.compress(lines.encode()))
    assert load_eval_set(packed) == load_eval_set(plain)

    assert condense_eval(str(plain), str(packed), "--set", "peps", "--limit", "2") == 0
    rows = table_rows(capsys.readouterr().out)
    assert [row[0] for row in rows if row[2] == "lead"] == ["mine", "theirs", "peps"]
    assert [row[1] for row in rows if row[2] == "lead"] == ["2", "2", "2"]


def test_eval_refuses_an_unknown_set_or_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert condense_eval("--set", "pepz") == 2
    assert "no shipped set 'pepz'; the shipped sets are peps, keps" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    assert condense_eval(str(broken)) == 2
    assert f"cannot read {broken}" in capsys.readouterr().err


def test_shipped_sets_are_complete_and_licensed() -> None:
    assert len(load_eval_set(shipped_set("peps"))) == 262
    assert len(load_eval_set(shipped_set("keps"))) == 324
    assert "Apache License" in (SHIPPED_DIR / "LICENSE-keps.txt").read_text(encoding="utf-8")
    readme = (SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC0-1.0" in readme and "LICENSE-keps.txt" in readme
