"""A cheap way to learn that something was committed to the embedded SQLite database.

The relay and the workers wait on it while idle instead of polling the database or the broker:
an idle embedded stack then costs a stat() every tenth of a second, and a commit (a submit, a
publication) still wakes them at once.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import make_url

# How often a watched file is looked at while idle: a stat() or two, nothing that wakes the database.
_WATCH_INTERVAL_S = 0.1

Signature = tuple[tuple[int, int] | None, ...]


class SqliteWatch:
    """Tells, for the price of a stat(), whether anything was committed to a SQLite database.

    In WAL mode every commit writes the ``-wal`` file and a checkpoint writes the database file;
    reads write neither. So the size and modification time of the two change exactly when some
    connection, in any process, has committed since the last look.
    """

    def __init__(self, path: Path) -> None:
        self.paths = (path, path.with_name(path.name + "-wal"))

    @classmethod
    def for_url(cls, url: str) -> SqliteWatch | None:
        """A watch for a SQLite file database; None for anything else (PostgreSQL, :memory:)."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        return cls(Path(parsed.database).resolve())

    def signature(self) -> Signature:
        marks: list[tuple[int, int] | None] = []
        for path in self.paths:
            try:
                stat = os.stat(path)
            except OSError:
                marks.append(None)
            else:
                marks.append((stat.st_mtime_ns, stat.st_size))
        return tuple(marks)

    def wait(self, seen: Signature, stop: threading.Event, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a commit after ``seen``; True when one came."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.signature() != seen:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.wait(min(_WATCH_INTERVAL_S, remaining)):
                return False
