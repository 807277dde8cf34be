"""Sub-commands that start or drive the components; each imports its component lazily."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the component commands to the ``condense`` parser."""
