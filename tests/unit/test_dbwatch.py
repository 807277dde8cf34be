"""Idle waits on a SQLite database (relay and worker): a commit anywhere ends them, a read does not."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import text

from schema.db import make_engine
from schema.dbwatch import SqliteWatch
from schema.settings import DatabaseSettings


def test_only_a_sqlite_file_can_be_watched(tmp_path: Path) -> None:
    assert SqliteWatch.for_url("postgresql://condense@127.0.0.1:5432/condense") is None
    assert SqliteWatch.for_url("sqlite://") is None
    assert SqliteWatch.for_url("sqlite:///:memory:") is None
    watch = SqliteWatch.for_url(f"sqlite:///{tmp_path}/condense.db")
    assert watch is not None
    assert watch.paths == (tmp_path / "condense.db", tmp_path / "condense.db-wal")


def test_a_commit_changes_the_signature_and_a_read_does_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/condense.db"
    engine = make_engine(DatabaseSettings(url=url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE outbox (id INTEGER PRIMARY KEY)"))
    watch = SqliteWatch.for_url(url)
    assert watch is not None

    seen = watch.signature()
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    assert watch.signature() == seen

    # Another process's engine, as the gateway's would be.
    other = make_engine(DatabaseSettings(url=url))
    with other.begin() as conn:
        conn.execute(text("INSERT INTO outbox (id) VALUES (1)"))
    assert watch.signature() != seen
    other.dispose()
    engine.dispose()


def test_wait_returns_at_once_for_a_commit_it_had_not_seen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/condense.db"
    watch = SqliteWatch.for_url(url)
    assert watch is not None
    seen = watch.signature()
    engine = make_engine(DatabaseSettings(url=url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE outbox (id INTEGER PRIMARY KEY)"))
    engine.dispose()

    # A day-long timeout: only the commit can end this wait.
    assert watch.wait(seen, threading.Event(), timeout_s=86_400) is True


def test_wait_ends_without_a_commit_when_stopped(tmp_path: Path) -> None:
    watch = SqliteWatch.for_url(f"sqlite:///{tmp_path}/condense.db")
    assert watch is not None
    stop = threading.Event()
    stop.set()

    assert watch.wait(watch.signature(), stop, timeout_s=86_400) is False


def test_an_idle_worker_loop_waits_on_the_database_and_a_commit_wakes_it(tmp_path: Path) -> None:
    from schema.settings import Settings
    from workers.consumer import BatchConsumer

    url = f"sqlite:///{tmp_path}/condense.db"
    engine = make_engine(DatabaseSettings(url=url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE outbox (id INTEGER PRIMARY KEY)"))
    watch = SqliteWatch.for_url(url)
    assert watch is not None
    consumer = BatchConsumer(Settings(), executor=None, watch=watch, clock=lambda: 100.0)  # type: ignore[arg-type]
    consumer._idle_since = 0.0
    assert consumer.idle
    # Lanes that hold their partitions (stand-ins for the Kafka consumers: only assignment() is read).
    partitions: set[int] = {0}
    lane = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: partitions))
    consumer._lanes = {"interactive": lane, "bulk": lane}  # type: ignore[dict-item]

    # Nothing committed: the wait runs to its end (here: the stop event), the loop stays idle.
    stop = threading.Event()
    stop.set()
    consumer._idle_wait(stop, watch.signature())
    assert consumer.idle

    # A commit (a submit, a publication) since the round began: back to the busy pace at once.
    seen = watch.signature()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO outbox (id) VALUES (1)"))
    consumer._idle_wait(threading.Event(), seen)
    assert not consumer.idle

    # While a lane is still joining the group, the loop keeps its short pause and ignores the file:
    # the join needs polls, and the first jobs would otherwise wait for it.
    partitions.clear()
    consumer._idle_since = 0.0
    seen = watch.signature()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO outbox (id) VALUES (2)"))
    consumer._idle_wait(stop, seen)
    assert consumer.idle
    engine.dispose()
