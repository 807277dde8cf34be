"""Command-line helpers the ``condense`` CLI wires in: ``condense summarize`` and ``condense eval``.

Each function takes already-parsed arguments and the summarizer settings and returns an exit code;
loading the settings is the caller's job.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from summarizer.errors import SummarizerError
from summarizer.loader import load_summarizer
from summarizer.settings import SummarizerSettings

if TYPE_CHECKING:
    from summarizer.evaluation import EvalDoc

_Command = Callable[[SummarizerSettings, argparse.Namespace], int]

# More files than this get a progress bar on stderr.
_PROGRESS_BAR_FILES = 3


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def summarize_files(
    settings: SummarizerSettings, paths: list[str], *, params: dict[str, Any], out: TextIO = sys.stdout
) -> int:
    """Summarize each file ("-" reads stdin) and print the summaries; 0 when all succeeded, 1 if not."""
    try:
        summarizer = load_summarizer(settings)
        validated = summarizer.validate_params(params)
    except SummarizerError as exc:
        _err(f"error: {exc.message}")
        return 2
    failed = 0
    batch_size = 16
    from tqdm import tqdm

    bar = tqdm(total=len(paths), unit="file", file=sys.stderr, disable=len(paths) <= _PROGRESS_BAR_FILES)
    try:
        for start in range(0, len(paths), batch_size):
            group = paths[start : start + batch_size]
            texts: list[str] = []
            readable: list[str] = []
            for path in group:
                try:
                    texts.append(_read(path))
                    readable.append(path)
                except (OSError, UnicodeDecodeError) as exc:
                    failed += 1
                    _err(f"error: {path}: {getattr(exc, 'strerror', None) or exc}")
            results = summarizer.summarize_batch(texts, validated) if texts else []
            for path, result in zip(readable, results, strict=True):
                if isinstance(result, SummarizerError):
                    failed += 1
                    _err(f"error: {path}: {result.code}: {result.message}")
                    continue
                if len(paths) > 1:
                    out.write(f"==> {path} <==\n")
                out.write(result.summary + "\n")
                if len(paths) > 1:
                    out.write("\n")
            bar.update(len(group))
    finally:
        bar.close()
    return 1 if failed else 0


def evaluate(
    settings: SummarizerSettings,
    paths: Sequence[str] = (),
    *,
    sets: Sequence[str] = (),
    words: int = 100,
    limit: int | None = None,
    out: TextIO | None = None,
) -> int:
    """Print one table of ROUGE-1/2/L F1 (x100) of the configured model beside the lead and TextRank
    baselines, per set: each file in ``paths``, each shipped set named in ``sets``, or both shipped
    sets when neither names any. ``limit`` keeps the first documents of each set."""
    from tqdm import tqdm

    from summarizer.evaluation import (
        SHIPPED_SETS,
        SetReport,
        baseline_scores,
        load_eval_set,
        model_summaries,
        score,
        set_name,
        shipped_set,
        table,
    )

    names = sets if sets or paths else SHIPPED_SETS
    try:
        sources = [(set_name(path), Path(path)) for path in paths]
        sources += [(name, shipped_set(name)) for name in names]
    except (OSError, ValueError) as exc:
        _err(f"error: {exc}")
        return 2
    loaded: list[tuple[str, list[EvalDoc]]] = []
    for name, path in sources:
        try:
            docs = load_eval_set(path, limit)
        except (OSError, EOFError, ValueError, KeyError) as exc:
            _err(f"error: cannot read {path}: {exc}")
            return 2
        if not docs:
            _err(f"error: {path} holds no documents")
            return 2
        loaded.append((name, docs))
    try:
        summarizer = load_summarizer(settings)
        params: dict[str, Any] = {
            "extractive": {"max_words": words},
            "abstractive": {"max_new_tokens": int(words * 4 / 3)},
            # Instruct models are asked for the length in words; the token bound leaves some slack.
            "causal": {"max_words": words, "max_new_tokens": int(words * 3 / 2)},
        }[summarizer.info.kind]
        label = f"{summarizer.info.name} ({summarizer.info.backend})"
        reports: list[SetReport] = []
        total = sum(len(docs) for _, docs in loaded)
        with tqdm(total=total, unit="doc", file=sys.stderr, desc=summarizer.info.name) as bar:
            for name, docs in loaded:
                summaries = model_summaries(summarizer, docs, params, progress=bar.update)
                if summarizer.info.kind != "extractive":
                    # Generated output has no hard word budget; trim so every system is judged at the same length.
                    summaries = [" ".join(summary.split()[:words]) for summary in summaries]
                references = [doc.reference for doc in docs]
                reports.append(
                    SetReport(name, baseline_scores(docs, words), score(label, summaries, references))
                )
    except SummarizerError as exc:
        _err(f"error: {exc.message}")
        return 2
    # sys.stdout read now, not at import, so that a redirected stdout gets the table.
    (out or sys.stdout).write(table(reports, words=words) + "\n")
    return 0


def _params_arg(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return parsed


def _summarize_command(settings: SummarizerSettings, args: argparse.Namespace) -> int:
    params = dict(args.params or {})
    if args.max_words is not None:
        params["max_words"] = args.max_words
    return summarize_files(settings, args.paths, params=params)


def _eval_command(settings: SummarizerSettings, args: argparse.Namespace) -> int:
    return evaluate(settings, args.data, sets=args.sets or (), words=args.words, limit=args.limit)


def add_arguments(subparsers: Any, section: Callable[[Any], SummarizerSettings]) -> None:
    """Register ``summarize`` and ``eval`` on an argparse sub-parsers object.

    Their ``handler`` default takes ``(settings, args)``, the program's own settings object;
    ``section(settings)`` picks the summarizer's settings out of it.
    """

    def handler(command: _Command) -> Callable[[Any, argparse.Namespace], int]:
        return lambda settings, args: command(section(settings), args)

    summarize = subparsers.add_parser("summarize", help="summarize files with the configured model")
    summarize.add_argument("paths", nargs="+", help="text files; - reads stdin")
    summarize.add_argument("--max-words", type=int, default=None, help="word budget (extractive models)")
    summarize.add_argument(
        "--params",
        type=_params_arg,
        default=None,
        help="JSON object of parameters, e.g. '{\"num_beams\": 4}'",
    )
    summarize.set_defaults(handler=handler(_summarize_command))

    evaluation = subparsers.add_parser("eval", help="ROUGE of the configured model beside lead and TextRank")
    evaluation.add_argument(
        "data",
        nargs="*",
        help="JSON lines (.jsonl or .jsonl.gz) with document and reference fields; with neither files"
        " nor --set, the shipped sets peps and keps",
    )
    evaluation.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="NAME",
        help="a set shipped in data/eval (peps, keps); repeat for both",
    )
    evaluation.add_argument("--words", type=int, default=100, help="summary budget in words")
    evaluation.add_argument(
        "--limit", type=int, default=None, help="evaluate the first N documents of each set"
    )
    evaluation.set_defaults(handler=handler(_eval_command))
