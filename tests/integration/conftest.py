"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from schema.db import make_engine
from schema.settings import DatabaseSettings


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A synchronous engine on the test's migrated database, once per dialect (see ``db_url``)."""
    engine = make_engine(DatabaseSettings(url=db_url))
    try:
        yield engine
    finally:
        engine.dispose()
