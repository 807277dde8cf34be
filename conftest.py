"""Fixtures that start real services live in tests/fixtures; each module owns one service."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.receivers",
    "tests.fixtures.redis_server",
]
