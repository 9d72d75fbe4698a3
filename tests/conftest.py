"""Fixtures shared by every tier: settings for tests and the check that the stack is up."""

from __future__ import annotations

import socket
import uuid

import pytest

from streams.settings import Settings

# DATABASE_URL of the test database: the local stack creates it next to the app's database.
TEST_DATABASE = "albums_test"


def _test_database_url(url: str) -> str:
    base, _, _db = url.rpartition("/")
    return f"{base}/{TEST_DATABASE}"


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings from the environment, pointed at the test database and a scratch DATA_DIR."""
    env = Settings.from_env()
    return Settings.from_env(
        database_url=type(env.database_url)(_test_database_url(env.database_url.get())),
        data_dir=tmp_path_factory.mktemp("data"),
    )


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group, bucket and label names of one test."""
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
