"""The Docker deployment agrees with itself and with Settings (no Docker engine needed).

compose/docker-compose.yml, compose/prometheus/prometheus.yml and the Dockerfile are only run by
users who have Docker, so what can be checked without an engine is checked here: the worker is
configured with Settings' own variable names, its credentials are the servers' credentials,
Prometheus scrapes the worker's web port and the image runs `streams worker`. When the `docker`
CLI has its compose plugin, `docker compose config -q` validates the file against the Compose
specification as well.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
PROMETHEUS_FILE = COMPOSE_DIR / "prometheus" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"

# Settings variables without which the worker cannot reach one of its servers.
SERVER_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "QDRANT_URL",
    "NEO4J_URI",
    "NEO4J_USER",
    "NEO4J_PASSWORD",
    "WEB_PORT",
)
# The servers the worker needs, by compose service name.
SERVERS = ("kafka", "postgres", "qdrant", "neo4j", "s3")
# Root credentials of the S3 server: versitygw's (either spelling) or MinIO's.
S3_ROOT_KEYS = (
    ("ROOT_ACCESS_KEY_ID", "ROOT_SECRET_ACCESS_KEY"),
    ("ROOT_ACCESS_KEY", "ROOT_SECRET_KEY"),
    ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment` (mapping or list form) as strings; a bare name maps to ''."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {name: value for name, value in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict), "`services` is not a mapping"
    assert services, "the compose file defines no services"
    return services


@pytest.fixture(scope="module")
def worker_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    assert "worker" in services, "no `worker` service"
    return environment(services["worker"])


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{PROMETHEUS_FILE} is not a YAML mapping"
    return data


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, comments dropped, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def test_compose_file_parses_and_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    expected = {*SERVERS, "prometheus", "grafana", "worker"}
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    without = [name for name, svc in services.items() if not (svc.get("image") or svc.get("build"))]
    assert not without, f"services with neither image nor build: {without}"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    # a tag (or digest) on every pulled image, never the moving `latest`
    for name, svc in services.items():
        if svc.get("build"):
            continue
        image = str(svc["image"])
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        pinned = "@sha256:" in image or tag not in ("", "latest")
        assert pinned, f"{name}: unpinned image {image}"


def test_worker_sets_only_settings_variables(worker_env: dict[str, str]) -> None:
    unknown = sorted(set(worker_env) - set(Settings.documented()))
    assert not unknown, f"worker variables that Settings does not read: {unknown}"


def test_worker_sets_every_server_variable(worker_env: dict[str, str]) -> None:
    missing = [name for name in SERVER_VARIABLES if not worker_env.get(name)]
    assert not missing, f"worker lacks (or leaves empty): {missing}"


def test_worker_environment_is_valid_settings(worker_env: dict[str, str]) -> None:
    settings = Settings.from_env(worker_env)
    # inside a container the web server must listen beyond the loopback interface
    assert settings.web_bind == "0.0.0.0"
    assert settings.data_dir.is_absolute(), "DATA_DIR must be an absolute path in the image"


def test_worker_reaches_servers_by_their_service_names(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    hosts = {
        "KAFKA_BOOTSTRAP_SERVERS": [
            hp.rsplit(":", 1)[0] for hp in Settings.from_env(worker_env).bootstrap_servers
        ],
        "DATABASE_URL": [urlsplit(worker_env["DATABASE_URL"]).hostname],
        "S3_ENDPOINT_URL": [urlsplit(worker_env["S3_ENDPOINT_URL"]).hostname],
        "QDRANT_URL": [urlsplit(worker_env["QDRANT_URL"]).hostname],
        "NEO4J_URI": [urlsplit(worker_env["NEO4J_URI"]).hostname],
    }
    for variable, names in hosts.items():
        for host in names:
            assert host in services, f"{variable} points at {host!r}, not a compose service"


def test_worker_waits_for_healthy_servers(services: dict[str, dict[str, Any]]) -> None:
    depends = services["worker"].get("depends_on")
    assert isinstance(depends, dict), "worker.depends_on must be the long form with conditions"
    for server in SERVERS:
        gate = server if server in depends else f"{server}-init"
        assert gate in depends, f"worker does not depend on {server}"
        condition = depends[gate].get("condition")
        if gate == server:
            assert condition == "service_healthy", f"worker → {server}: {condition}"
            assert services[server].get("healthcheck"), f"{server} has no healthcheck"
        else:
            assert condition == "service_completed_successfully", f"worker → {gate}: {condition}"


def test_kafka_advertises_the_workers_bootstrap_address(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    kafka = environment(services["kafka"])
    advertised = {
        listener.split("://", 1)[1] for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    for server in Settings.from_env(worker_env).bootstrap_servers:
        assert server in advertised, f"{server} is not an advertised listener: {advertised}"
    # one broker: the transaction log must accept it, or exactly_once never starts
    assert int(kafka["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 1
    assert int(kafka["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 1
    assert int(kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1


def test_postgres_credentials_match(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    postgres = environment(services["postgres"])
    url = urlsplit(worker_env["DATABASE_URL"])
    assert url.scheme == "postgresql+asyncpg"
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert (url.port or 5432) == 5432


def test_neo4j_credentials_match(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    user, _, password = environment(services["neo4j"])["NEO4J_AUTH"].partition("/")
    assert worker_env["NEO4J_USER"] == user
    assert worker_env["NEO4J_PASSWORD"] == password
    assert urlsplit(worker_env["NEO4J_URI"]).port == 7687


def test_s3_credentials_match(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    server = environment(services["s3"])
    keys = next(((a, s) for a, s in S3_ROOT_KEYS if a in server and s in server), None)
    assert keys, f"the s3 service sets none of the root credential pairs {S3_ROOT_KEYS}"
    assert worker_env["S3_ACCESS_KEY"] == server[keys[0]]
    assert worker_env["S3_SECRET_KEY"] == server[keys[1]]
    # the one-shot that creates the bucket creates the worker's bucket, as the root account
    init = environment(services["s3-init"])
    assert init["S3_BUCKET"] == worker_env["S3_BUCKET"]
    assert init["S3_ACCESS_KEY"] == worker_env["S3_ACCESS_KEY"]
    assert init["S3_SECRET_KEY"] == worker_env["S3_SECRET_KEY"]
    assert init["S3_URL"] == worker_env["S3_ENDPOINT_URL"]


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"


def test_worker_publishes_its_web_port(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str]
) -> None:
    web_port = worker_env["WEB_PORT"]
    assert f"127.0.0.1:{web_port}:{web_port}" in [str(p) for p in services["worker"]["ports"]]


def test_prometheus_scrapes_the_workers_web_port(
    prometheus_config: dict[str, Any],
    services: dict[str, dict[str, Any]],
    worker_env: dict[str, str],
) -> None:
    targets = [
        (job, target)
        for job in prometheus_config["scrape_configs"]
        for group in job.get("static_configs", [])
        for target in group.get("targets", [])
        if target.rsplit(":", 1)[0] == "worker"
    ]
    assert targets, "no scrape target on the worker service"
    for job, target in targets:
        assert target.rsplit(":", 1)[1] == worker_env["WEB_PORT"], target
        assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "/etc/prometheus/alerts.yml" in prometheus_config.get("rule_files", [])
    # the rules are loaded from the folder mounted at /etc/prometheus
    mounts = [str(v).split(":")[:2] for v in services["prometheus"].get("volumes", [])]
    assert ["./prometheus", "/etc/prometheus"] in mounts, mounts


def test_dockerfile_runs_the_streams_worker(services: dict[str, dict[str, Any]]) -> None:
    instructions = dockerfile_instructions()
    cmds = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    command = json.loads(cmds[-1])  # exec form, so signals reach the worker
    assert command[-3:] == ["-m", "streams", "worker"] or command[-2:] == ["streams", "worker"]
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms[-1].split()[0] == "python:3.11-slim"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the Dockerfile sets no USER: the worker would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), "the worker must not run as root"
    exposed = " ".join(args for keyword, args in instructions if keyword == "EXPOSE").split()
    assert str(Settings().web_port) in exposed
    # the compose worker is built from this Dockerfile
    build = services["worker"]["build"]
    assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == DOCKERFILE.name


def test_dockerfile_sets_only_settings_variables() -> None:
    names: list[str] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            names += re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args)
    assert names, "the Dockerfile sets no variable"
    ours = [n for n in names if not n.startswith(("PYTHON", "PIP_"))]
    unknown = sorted(set(ours) - set(Settings.documented()))
    assert not unknown, f"Dockerfile variables that Settings does not read: {unknown}"


def test_ingest_service_sets_only_valid_settings(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["ingest"])
    unknown = sorted(set(env) - set(Settings.documented()))
    assert not unknown, f"ingest variables that Settings does not read: {unknown}"
    resolved = {
        k: v.split(":-", 1)[1].rstrip("}") if v.startswith("${") else v for k, v in env.items()
    }
    Settings.from_env(resolved)  # valid values
    assert services["ingest"]["command"][-2:] == ["ingest", "run"]
    for name in ("worker", "ingest"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
