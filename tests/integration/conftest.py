"""Integration tier: the real servers of the local stack must answer (make test starts them)."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest

from streams.settings import Settings


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Fail (never skip) when a server of the stack does not answer."""
    if not _reachable(host, port):
        pytest.fail(
            f"{name} does not answer on {host}:{port}; `make test` starts the local stack "
            f"(or run `make stack-up`)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kafka(base_settings: Settings) -> list[str]:
    servers = base_settings.bootstrap_servers
    host, _, port = servers[0].rpartition(":")
    require("Kafka", host, int(port))
    return servers


@pytest.fixture(scope="session")
def postgres_url(base_settings: Settings) -> str:
    url = base_settings.database_url.get()
    parsed = urlparse(url.replace("+asyncpg", ""))
    require("Postgres", parsed.hostname or "127.0.0.1", parsed.port or 5432)
    return url


@pytest.fixture(scope="session")
def neo4j_settings(base_settings: Settings) -> Settings:
    parsed = urlparse(base_settings.neo4j_uri)
    require("Neo4j", parsed.hostname or "127.0.0.1", parsed.port or 7687)
    return base_settings


@pytest.fixture(scope="session")
def s3_settings(base_settings: Settings) -> Settings:
    parsed = urlparse(base_settings.s3_endpoint_url)
    require("S3", parsed.hostname or "127.0.0.1", parsed.port or 80)
    return base_settings
