"""`condense usage` and `condense tenants limits`: what tenants used, and what they may use."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from schema.settings import Settings


def _optional_number(kind: type[int] | type[float]) -> Any:
    def parse(raw: str) -> int | float | None:
        if raw.lower() in {"none", "off", "-"}:
            return None
        value = kind(raw)
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value

    return parse


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import usage

    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            whole = usage.totals(conn, args.tenant, from_day=args.from_day, to_day=args.to_day)
            groups = (
                usage.totals(
                    conn, args.tenant, from_day=args.from_day, to_day=args.to_day, group_by=args.group_by
                )
                if args.group_by
                else []
            )
    finally:
        engine.dispose()
    total = whole[0].as_dict() if whole else usage.UsageTotals(None, 0, 0, 0, 0, 0, 0.0).as_dict()
    if args.json:
        body: dict[str, Any] = {"tenant": args.tenant, "totals": total}
        if args.group_by:
            body["groups"] = [{args.group_by: g.group, **g.as_dict()} for g in groups]
        print(json.dumps(body, indent=2))
        return 0
    header = (
        f"{'':<12} {'jobs':>8} {'cached':>8} {'input tok':>12} {'output':>10} {'chunks':>8} {'engine s':>10}"
    )
    print(f"usage of tenant {args.tenant}")
    print(header)

    def line(name: str, values: dict[str, Any]) -> str:
        return (
            f"{name:<12} {values['jobs']:>8} {values['cached_jobs']:>8} {values['input_tokens']:>12} "
            f"{values['output_units']:>10} {values['chunks']:>8} {values['engine_s']:>10.2f}"
        )

    for group in groups:
        print(line(str(group.group)[:12], group.as_dict()))
    print(line("total", total))
    return 0


def _limits_set(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import quotas

    values = {name: getattr(args, name) for name in quotas.LIMIT_FIELDS if getattr(args, name) is not _UNSET}
    if not values:
        print(
            "condense: give at least one of --rps --burst --max-running --max-queued --tokens-per-day",
            file=sys.stderr,
        )
        return 2
    engine = make_engine(settings.database)
    try:
        with engine.begin() as conn:
            limits = quotas.set_limits(conn, args.tenant, **values)
    finally:
        engine.dispose()
    print(_describe(limits.as_dict()))
    return 0


def _limits_show(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import quotas

    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            found = quotas.list_limits(conn)
    finally:
        engine.dispose()
    shown = [limits for limits in found if args.tenant in (None, limits.tenant)]
    if not shown:
        print("no limits set" if args.tenant is None else f"no limits set for tenant {args.tenant}")
    for limits in shown:
        print(_describe(limits.as_dict()))
    return 0


def _limits_clear(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import make_engine
    from schema.store import quotas

    engine = make_engine(settings.database)
    try:
        with engine.begin() as conn:
            cleared = quotas.clear_limits(conn, args.tenant)
    finally:
        engine.dispose()
    print(f"limits of tenant {args.tenant} {'cleared' if cleared else 'were not set'}")
    return 0


def _describe(values: dict[str, Any]) -> str:
    parts = [f"{name}={'-' if values[name] is None else values[name]}" for name in values if name != "tenant"]
    return f"{values['tenant']}: " + " ".join(parts)


_UNSET: Any = object()


def add_arguments(commands: Any) -> None:
    usage = commands.add_parser("usage", help="a tenant's usage: jobs, tokens, engine time")
    usage.add_argument("--tenant", required=True)
    usage.add_argument("--from", dest="from_day", type=date.fromisoformat, default=None, help="first UTC day")
    usage.add_argument("--to", dest="to_day", type=date.fromisoformat, default=None, help="last UTC day")
    usage.add_argument("--group-by", choices=("day", "model"), default=None)
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(handler=_usage)

    tenants = commands.add_parser("tenants", help="per-tenant settings").add_subparsers(
        dest="sub", required=True
    )
    limits = tenants.add_parser("limits", help="quotas and rate limits").add_subparsers(
        dest="action", required=True
    )
    set_ = limits.add_parser("set", help="set some limits of a tenant ('none' lifts one)")
    set_.add_argument("tenant")
    set_.add_argument("--rps", type=_optional_number(float), default=_UNSET, help="requests a second")
    set_.add_argument("--burst", type=_optional_number(int), default=_UNSET, help="requests at once")
    set_.add_argument(
        "--max-running", type=_optional_number(int), default=_UNSET, help="jobs running at once"
    )
    set_.add_argument("--max-queued", type=_optional_number(int), default=_UNSET, help="documents queued")
    set_.add_argument(
        "--tokens-per-day", type=_optional_number(int), default=_UNSET, help="input tokens a UTC day"
    )
    set_.set_defaults(handler=_limits_set)
    show = limits.add_parser("show", help="list limits")
    show.add_argument("tenant", nargs="?", default=None)
    show.set_defaults(handler=_limits_show)
    clear = limits.add_parser("clear", help="remove every limit of a tenant")
    clear.add_argument("tenant")
    clear.set_defaults(handler=_limits_clear)
