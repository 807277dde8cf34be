"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL alike.

A model changed without a migration (or the reverse) shows up here as drift, long before a
production database disagrees with the code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, DateTime, Engine, Index, MetaData, String, create_engine, inspect, text

from schema.db import alembic_config, downgrade, is_sqlite, sync_url, upgrade
from schema.models import Base

REPO = Path(__file__).resolve().parents[2]
ALEMBIC_TABLE = "alembic_version"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url_empty" if request.param == "sqlite" else "pg_url_empty")
    return url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(empty_url))
    yield engine
    # An open pool would keep PostgreSQL from dropping the database quickly.
    engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def drift(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                # Types matter: a VARCHAR(36) id or a timestamp without zone would break code that
                # works on the other dialect. No model uses server defaults, so none may appear.
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        diffs: list[Any] = compare_metadata(context, metadata)
        return diffs


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def condense_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {ALEMBIC_TABLE}


def flatten(diffs: list[Any]) -> list[tuple[Any, ...]]:
    # Column modifications arrive as a list of tuples; everything else as one tuple.
    entries: list[tuple[Any, ...]] = []
    for diff in diffs:
        entries.extend(diff if isinstance(diff, list) else [diff])
    return entries


def test_upgrade_head_matches_the_models(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)

    assert current_revision(engine) == head_revision()
    assert condense_tables(engine) == set(Base.metadata.tables)
    assert drift(engine, Base.metadata) == []


def test_drift_check_notices_a_model_the_migrations_do_not_build(empty_url: str, engine: Engine) -> None:
    # Guards the test above: an empty diff must mean "no drift", not "nothing was compared".
    upgrade(empty_url)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    jobs = changed.tables["summary_jobs"]
    jobs.append_column(Column("priority", String(8), nullable=True))
    jobs.c.custom_id.type = String(1024)
    Index("ix_summary_jobs_lane", jobs.c.lane)
    changed.tables["batches"].c.finished_at.type = DateTime(timezone=False)

    diffs = drift(engine, changed)

    kinds = {entry[0] for entry in flatten(diffs)}
    retyped = {(entry[2], entry[3]) for entry in flatten(diffs) if entry[0] == "modify_type"}
    assert {"add_column", "add_index", "modify_type"} <= kinds
    assert ("summary_jobs", "custom_id") in retyped
    # SQLite has no zone-aware timestamp type, so only PostgreSQL can show that difference.
    assert (("batches", "finished_at") in retyped) is not is_sqlite(empty_url)


def test_downgrade_base_removes_every_table_and_upgrade_works_again(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO outbox (id, job_id, topic, created_at) VALUES (1, 'j', 't', CURRENT_TIMESTAMP)")
        )

    downgrade(empty_url, "base")

    assert condense_tables(engine) == set()
    assert current_revision(engine) is None
    if not is_sqlite(empty_url):
        with engine.connect() as conn:
            # BIGSERIAL sequences and any enum types must go with their tables.
            sequences = conn.execute(
                text(
                    "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'"
                )
            ).all()
            types = conn.execute(
                text(
                    "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                    " WHERE n.nspname = 'public' AND t.typtype = 'e'"
                )
            ).all()
        assert sequences == []
        assert types == []

    upgrade(empty_url)

    assert current_revision(engine) == head_revision()
    assert drift(engine, Base.metadata) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM outbox")).scalar_one() == 0


def cli_env(database_url: str) -> dict[str, str]:
    # The developer's own CONDENSE_* variables (a config file, another database) must not leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONDENSE_")}
    env["CONDENSE_DATABASE__URL"] = database_url
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "condense", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_db_upgrade_and_downgrade(empty_url: str, engine: Engine) -> None:
    env = cli_env(empty_url)

    up = run_cli("db", "upgrade", env=env)

    assert up.returncode == 0, up.stderr
    assert current_revision(engine) == head_revision()
    assert condense_tables(engine) == set(Base.metadata.tables)

    down = run_cli("db", "downgrade", "base", env=env)

    assert down.returncode == 0, down.stderr
    assert condense_tables(engine) == set()
