"""``condense models``: the model variants a gateway serves, as a table (a client of GET /v1/models)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from condense.batch_cli import _api_key, _base_url, remote
from condense.client import Client
from schema.settings import Settings

_COLUMNS = (
    ("NAME", "name"),
    ("WEIGHT", "weight"),
    ("SHARE", "share"),
    ("STATUS", "status"),
    ("KIND", "kind"),
    ("BACKEND", "backend"),
    ("QUANT", "quantization"),
    ("MODEL", "model"),
    ("SHA256", "sha256"),
    ("ENGINE", "engine_version"),
    ("ADAPTERS", "adapters"),
)


def _cell(key: str, value: Any) -> str:
    if value is None or value == {}:
        return "-"
    if key == "share":
        return f"{value:.1%}"
    if key == "weight":
        return f"{value:g}"
    if key == "sha256":
        # Enough to tell two weight sets apart in a table; --json has the whole digest.
        return str(value)[:12]
    if key == "adapters":
        return ",".join(f"{name}@{str(digest)[:8]}" for name, digest in sorted(value.items()))
    return str(value)


def models_table(variants: list[dict[str, Any]]) -> str:
    """The variants of ``GET /v1/models`` as aligned columns, one line each, errors below."""
    rows = [[title for title, _ in _COLUMNS]]
    rows += [[_cell(key, variant.get(key)) for _, key in _COLUMNS] for variant in variants]
    widths = [max(len(row[index]) for row in rows) for index in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines += [f"{variant['name']}: {variant['error']}" for variant in variants if variant.get("error")]
    return "\n".join(lines)


@remote
def models(settings: Settings, args: argparse.Namespace) -> int:
    with Client(_base_url(settings, args), api_key=_api_key(args), timeout_s=30) as client:
        variants = client.models()
    print(json.dumps({"data": variants}, indent=2) if args.json else models_table(variants))
    return 0


def add_arguments(commands: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """``condense models``; returned so that its sub-commands (verify, audit) can hang off it."""
    parser = commands.add_parser(
        "models", help="list the model variants the gateway serves; verify and audit the model files"
    )
    parser.add_argument("--url", default=None, help="gateway base URL (default: from the settings)")
    parser.add_argument("--api-key", default=None, help="API key (default: $CONDENSE_API_KEY)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")
    parser.set_defaults(handler=models)
    return parser
