"""``condense drift report``: two windows of job statistics compared, PSI and KS per statistic."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta

from common.errors import ConfigError
from schema.settings import Settings

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta | None:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def parse_time(text: str, now: datetime) -> datetime:
    """An ISO time (UTC when it names no zone) or a duration ago (``90m``, ``24h``, ``7d``)."""
    ago = parse_duration(text)
    if ago is not None:
        return now - ago
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{text!r} is neither an ISO time nor a duration like 24h or 7d") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_windows(
    since: str, until: str | None, against: str, now: datetime
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(reference, current). ``against`` is ``START..END``, or a duration: that long before ``since``."""
    current = (parse_time(since, now), parse_time(until, now) if until else now)
    if ".." in against:
        first, last = against.split("..", 1)
        reference = (parse_time(first, now), parse_time(last, now) if last.strip() else current[0])
    else:
        length = parse_duration(against)
        if length is None:
            raise ConfigError(f"--against {against!r}: give START..END or a duration like 7d")
        reference = (current[0] - length, current[0])
    for name, (begin, end) in (("current", current), ("reference", reference)):
        if begin >= end:
            raise ConfigError(f"the {name} window is empty ({begin.isoformat()} .. {end.isoformat()})")
    return reference, current


def report(settings: Settings, args: argparse.Namespace, *, now: datetime | None = None) -> int:
    """Print the comparison; exit 3 when some statistic moved, so scripts can act on it."""
    from schema.db import make_engine
    from schema.store import drift as drift_store

    drift = settings.governance.drift
    reference, current = parse_windows(args.since, args.until, args.against, now or datetime.now(UTC))
    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            models = drift_store.drift_report(
                conn,
                reference=reference,
                current=current,
                psi_threshold=drift.psi_threshold,
                ks_alpha=drift.ks_alpha,
                min_jobs=drift.min_jobs,
                model_key=args.model,
            )
    finally:
        engine.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "reference": [t.isoformat() for t in reference],
                    "current": [t.isoformat() for t in current],
                    "psi_threshold": drift.psi_threshold,
                    "ks_alpha": drift.ks_alpha,
                    "models": [m.as_dict() for m in models],
                },
                indent=2,
            )
        )
    else:
        print(f"reference {reference[0].isoformat()} .. {reference[1].isoformat()}")
        print(f"current   {current[0].isoformat()} .. {current[1].isoformat()}")
        if not models:
            print("no job statistics in either window")
        for model in models:
            print(
                f"\n{model.model_key}: {model.reference_jobs} reference jobs, {model.current_jobs} current jobs"
            )
            if not model.stats:
                print(f"  too few jobs for a verdict (governance.drift.min_jobs = {drift.min_jobs})")
                continue
            print(f"  {'statistic':22} {'PSI':>8} {'KS D':>8} {'KS p':>10}  verdict")
            for stat in model.stats:
                ks_d = "-" if stat.ks_statistic is None else f"{stat.ks_statistic:.3f}"
                ks_p = "-" if stat.ks_pvalue is None else f"{stat.ks_pvalue:.2e}"
                verdict = "MOVED" if stat.moved else "stable"
                print(f"  {stat.statistic:22} {stat.psi:8.3f} {ks_d:>8} {ks_p:>10}  {verdict}")
    return 3 if any(m.moved for m in models) else 0
