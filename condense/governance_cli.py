"""``condense models verify|audit``, ``condense pii`` and ``condense drift report``: governance from the command line."""

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


def _pii_set(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import pii_policies

    engine = make_engine(settings.database)
    try:
        with engine.begin() as conn:
            pii_policies.set_mode(conn, args.tenant, args.mode)
    finally:
        engine.dispose()
    print(f"tenant {args.tenant}: PII mode {args.mode}")
    return 0


def _pii_clear(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import pii_policies

    engine = make_engine(settings.database)
    try:
        with engine.begin() as conn:
            cleared = pii_policies.clear_mode(conn, args.tenant)
    finally:
        engine.dispose()
    fallback = settings.governance.pii.mode_for(args.tenant)
    print(f"tenant {args.tenant}: {'cleared' if cleared else 'had no mode'}; the settings give {fallback}")
    return 0


def _pii_list(settings: Settings, _args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import pii_policies

    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            stored = pii_policies.all_modes(conn)
    finally:
        engine.dispose()
    pii = settings.governance.pii
    print(f"default (settings): {pii.default_mode}")
    for tenant, configured in sorted(pii.tenant_modes.items()):
        print(f"{tenant}: {configured} (settings)")
    for tenant, mode in sorted(stored.items()):
        print(f"{tenant}: {mode} (database)")
    return 0


def add_arguments(commands: argparse._SubParsersAction[Any], models_parser: argparse.ArgumentParser) -> None:
    # Under `condense models`, which alone lists the gateway's variants.
    models = models_parser.add_subparsers(dest="models_sub", required=False, metavar="{verify,audit}")
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

    from common.pii import PII_MODES

    pii = commands.add_parser("pii", help="tenants' PII modes").add_subparsers(dest="sub", required=True)
    set_mode = pii.add_parser("set", help="store a tenant's default PII mode (applies within seconds)")
    set_mode.add_argument("--tenant", required=True)
    set_mode.add_argument("mode", choices=PII_MODES)
    set_mode.set_defaults(handler=_pii_set)
    clear = pii.add_parser("clear", help="drop a tenant's stored mode (the settings apply again)")
    clear.add_argument("--tenant", required=True)
    clear.set_defaults(handler=_pii_clear)
    pii.add_parser("list", help="the modes in force: settings and database").set_defaults(handler=_pii_list)

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
