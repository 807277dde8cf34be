"""What both databases can store, checked before anything is written.

PostgreSQL refuses NUL in text and in JSON strings, and NaN or Infinity in JSON; no database can
encode a lone UTF-16 surrogate as UTF-8; a very deep JSON value can be written but no longer read
back and rendered. Each of these used to pass the API and fail later — in a group commit, taking
its neighbours down with it, or on every read of the row. Refusing them up front keeps a bad
request a 4xx that changes nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_JSON_DEPTH = 32


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains an unpaired surrogate at character {exc.start}"
    return None


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored and read back, or None; names the path at fault.

    Iterative, so that a value nested deeper than Python's recursion limit is reported, not crashed on.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            return f"{path or 'value'}: nested deeper than {max_depth} levels"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"{path or 'value'}: {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path or 'value'}: {item} is not a JSON number"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{path or 'value'}: keys must be strings"
                problem = text_problem(key)
                if problem:
                    return f"{path or 'value'}: a key {problem}"
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif item is not None and not isinstance(item, bool | int):
            return f"{path or 'value'}: {type(item).__name__} is not a JSON value"
    return None


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (call after :func:`json_problem` passed)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
