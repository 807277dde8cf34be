"""``condense models verify|audit`` and ``condense drift report``: governance from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schema.settings import Settings


def _models_verify(settings: Settings, args: argparse.Namespace) -> int:
    from summarizer import manifest

    cache_dir = Path(settings.summarizer.cache_dir)
    results = manifest.verify_all(cache_dir)
    if not results:
        print(
            f"no model manifests under {manifest.manifest_dir(cache_dir)}; load a model first",
            file=sys.stderr,
        )
        return 1
    bad = 0
    for path, differences in results.items():
        if not differences:
            print(f"ok {path.name}")
            continue
        bad += 1
        print(f"MISMATCH {path.name}")
        for line in differences:
            print(f"  {line}")
        if args.accept:
            expected = manifest.Manifest.from_json(path.read_text(encoding="utf-8"))
            current = manifest.rebuild(expected)
            manifest.accept(manifest.ManifestCheck(path, current, written_now=False, differences=differences))
            print(f"  accepted: {path.name} now describes the files as they are")
    return 1 if bad and not args.accept else 0


def _models_audit(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import audit

    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            events = audit.events(conn, limit=args.limit)
    finally:
        engine.dispose()
    for event in reversed(events):
        manifest_digest = (event.manifest_sha256 or "-")[:12]
        print(
            f"{event.at.isoformat()} {event.event:8} {event.component}@{event.host}:{event.pid} "
            f"{event.model_name} manifest={manifest_digest} weights={(event.weights_sha256 or '-')[:12]}"
        )
        if event.event == audit.MISMATCH:
            for line in event.details.get("differences", []):
                print(f"    {line}")
    return 0


def _drift_report(settings: Settings, args: argparse.Namespace) -> int:
    from condense.drift_cli import report

    return report(settings, args)


def add_arguments(commands: argparse._SubParsersAction[Any]) -> None:
    models = commands.add_parser("models", help="model manifests and the audit trail").add_subparsers(
        dest="sub", required=True
    )
    verify = models.add_parser(
        "verify", help="re-hash every model file against its manifest; exit 1 naming any that differ"
    )
    verify.add_argument(
        "--accept",
        action="store_true",
        help="after an intended change, make the files as they are the reference",
    )
    verify.set_defaults(handler=_models_verify)
    audit = models.add_parser("audit", help="the latest model audit events (loads, changes, mismatches)")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(handler=_models_audit)

    drift = commands.add_parser("drift", help="input and output drift per model").add_subparsers(
        dest="sub", required=True
    )
    rep = drift.add_parser("report", help="compare two windows of job statistics (PSI and KS per statistic)")
    rep.add_argument(
        "--since", required=True, help="start of the current window: ISO time or a duration ago (24h, 7d)"
    )
    rep.add_argument("--until", default=None, help="end of the current window (default: now)")
    rep.add_argument(
        "--against",
        required=True,
        help="the reference window: START..END (ISO times or durations ago), or a duration before --since",
    )
    rep.add_argument("--model", default=None, help="one model key (variant or model name); default: all")
    rep.add_argument("--json", action="store_true", help="the figures as JSON")
    rep.set_defaults(handler=_drift_report)
