"""The ``condense`` command: builds the settings once and hands them to the part it starts.

This package is the only place that knows every component; the components themselves
(gateway, workers, notifier) never import each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from common.errors import ConfigError
from schema.settings import CONFIG_ENV_VAR, Settings, load_settings

Handler = Callable[[Settings, argparse.Namespace], int]


def _config_show(settings: Settings, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(settings.masked(), indent=2))
        return 0
    from condense.configshow import render

    print(render(settings, args.config or os.environ.get(CONFIG_ENV_VAR) or None, os.environ))
    return 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import upgrade

    upgrade(settings.database.url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    from schema.db import downgrade

    downgrade(settings.database.url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from condense.dev import run_dev_stack

    return run_dev_stack(settings, port=args.port, config_path=args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="condense", description="Summarize long text, asynchronously.")
    parser.add_argument("--config", metavar="PATH", help="YAML settings file (default: $CONDENSE_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="inspect the settings").add_subparsers(
        dest="sub", required=True
    )
    show = config.add_parser(
        "show", help="print the effective settings (secrets masked) and where each value came from"
    )
    show.add_argument("--json", action="store_true", help="the settings alone, as JSON, for scripts")
    show.set_defaults(handler=_config_show)

    db = commands.add_parser("db", help="database migrations").add_subparsers(dest="sub", required=True)
    up = db.add_parser("upgrade", help="migrate to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)
    down = db.add_parser("downgrade", help="migrate back to a revision")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)

    dev = commands.add_parser("dev", help="run the whole embedded stack on this machine")
    dev.add_argument("--port", type=int, default=None, help="gateway port (default: gateway.port)")
    dev.set_defaults(handler=_dev)

    from condense import commands as more

    more.register(commands)
    from condense import cost_cli

    cost_cli.add_arguments(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"condense: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except ConfigError as exc:
        print(f"condense: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
