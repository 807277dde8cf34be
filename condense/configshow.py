"""``condense config show``: every effective value, where it came from, and what dev replaces.

Each line is ``key = value  # source``, the source being ``default``, ``file`` (the YAML file) or
``env NAME`` (the variable that set it). ``condense dev`` replaces a few values for its children
(its own broker, loopback, free metrics ports): those lines say so, with the addresses actually in
use when a ``condense dev`` runs from the same data directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from condense.dev import OPS_COMPONENTS, running_stack
from schema.settings import NON_SETTING_ENV_VARS, Settings

Path_ = tuple[str, ...]


def flatten(data: Mapping[str, Any], prefix: Path_ = ()) -> dict[Path_, Any]:
    """Leaves of nested mappings by their key path; a list is one leaf."""
    leaves: dict[Path_, Any] = {}
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            leaves.update(flatten(value, path))
        else:
            leaves[path] = value
    return leaves


def env_paths(environ: Mapping[str, str]) -> dict[Path_, str]:
    """The settings path each ``CONDENSE_*`` setting variable sets, to the variable's name."""
    top_level = set(Settings.model_fields)
    found: dict[Path_, str] = {}
    for name in environ:
        if not name.startswith("CONDENSE_") or name in NON_SETTING_ENV_VARS:
            continue
        rest = name.removeprefix("CONDENSE_")
        path = tuple(part.lower() for part in rest.split("__"))
        # A single-underscore name sets something only when it is a top-level key (CONDENSE_DATA_DIR);
        # any other (a Kubernetes service link) was let through by the loader and sets nothing.
        if "__" in rest or path[0] in top_level:
            found[path] = name
    return found


def _source(path: Path_, file_leaves: dict[Path_, Any], env: dict[Path_, str]) -> str:
    prefixes = [path[:end] for end in range(len(path), 0, -1)]
    for prefix in prefixes:
        if prefix in env:
            return f"env {env[prefix]}"
    if any(prefix in file_leaves for prefix in prefixes):
        return "file"
    return "default"


def _dev_note(path: Path_, source: str, stack: dict[str, Any] | None) -> str | None:
    """What ``condense dev`` does with this value, if it replaces it."""
    metrics = (stack or {}).get("metrics", {})
    if path == ("kafka", "bootstrap_servers"):
        if stack:
            return f"condense dev uses its own broker, {stack.get('broker')}"
        return "not used by condense dev: it runs its own in-memory broker on a free port"
    if path == ("gateway", "host"):
        return "condense dev: 127.0.0.1"
    if path == ("gateway", "port") and stack and stack.get("gateway"):
        return f"condense dev serves {stack['gateway']}"
    if path == ("notifier", "allow_loopback"):
        return "condense dev: true"
    if path == ("notifier", "public_base_url"):
        return "condense dev: the gateway's own address"
    if len(path) == 2 and path[0] in OPS_COMPONENTS and path[1] == "metrics_port":
        if stack and path[0] in metrics:
            return f"condense dev uses {metrics[path[0]]}"
        if source == "default":
            return "condense dev picks a free port unless this is set"
    return None


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value.strip() == value and value else json.dumps(value)
    return json.dumps(value)


def render(settings: Settings, config_path: str | None, environ: Mapping[str, str]) -> str:
    leaves = flatten(settings.masked())
    file_data: Any = {}
    if config_path:
        # load_settings has read and validated this very file already.
        file_data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    file_leaves = flatten(file_data) if isinstance(file_data, Mapping) else {}
    env = env_paths(environ)
    data_dir = Path(settings.data_dir).resolve()
    stack = running_stack(data_dir)

    origin = f"file {config_path}" if config_path else "no file (--config or CONDENSE_CONFIG names one)"
    lines = [f"# condense settings: defaults, then {origin}, then CONDENSE_* variables", ""]
    width = max(len(".".join(path)) for path in leaves)
    rows = []
    for path, value in leaves.items():
        source = _source(path, file_leaves, env)
        note = _dev_note(path, source, stack)
        rows.append((f"{'.'.join(path):<{width}} = {_render_value(value)}", source, note))
    # Comments line up after the common values; a long one (a list) just pushes its own comment.
    column = min(max(len(left) for left, _, _ in rows), width + 3 + 32) + 2
    section = None
    for (left, source, note), path in zip(rows, leaves, strict=True):
        if section is not None and path[0] != section:
            lines.append("")
        section = path[0]
        comment = source if note is None else f"{source}; {note}"
        lines.append(f"{left:<{column - 2}}  # {comment}")
    lines.append("")
    if stack is not None:
        lines.append(f"# A `condense dev` (pid {stack.get('pid', '?')}) runs from {data_dir} and uses:")
        for key in ("gateway", "broker", "database", "logs"):
            if stack.get(key):
                lines.append(f"#   {key:<9} {stack[key]}")
        if stack.get("metrics"):
            metrics = ", ".join(f"{name} {where}" for name, where in stack["metrics"].items())
            lines.append(f"#   {'metrics':<9} {metrics}")
    else:
        lines.append(
            f"# No `condense dev` runs from {data_dir}. Under `condense dev` the lines marked"
            " 'condense dev' are replaced for its children."
        )
    return "\n".join(lines)
