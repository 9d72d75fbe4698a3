"""The worker starts both ways (`python -m streams worker`, `faust -A streams.app worker`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.workers import WorkerProcess

COMMANDS = {
    "python -m streams": [sys.executable, "-m", "streams", "worker", "-l", "info"],
    "faust -A streams.app": [
        str(Path(sys.executable).with_name("faust")),
        "-A",
        "streams.app",
        "worker",
        "-l",
        "info",
    ],
}


def await_backlog(worker: WorkerProcess, within: float = 60.0) -> dict[str, int]:
    """The worker's backlog by stage, once its first lag measurement is in."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        _status, detailed = worker.get("/health/detailed")
        by_stage = detailed["tasks"]["album_assembler"]["backlog_by_stage"]
        if by_stage is not None:
            assert detailed["tasks"]["album_assembler"]["backlog_size"] == sum(by_stage.values())
            return dict(by_stage)
        time.sleep(0.5)
    raise AssertionError(f"no lag measured within {within:g}s:\n{worker.tail()}")


@pytest.mark.parametrize("how", list(COMMANDS))
def test_worker_starts_answers_health_and_stops(
    how: str, kafka: list[str], tmp_path: Path, unique: str
) -> None:
    port = free_port()
    worker = WorkerProcess(
        {
            "APP_ID": f"e2e-health-{unique}",
            "WEB_PORT": str(port),
            "DATA_DIR": str(tmp_path / "data"),
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(kafka),
        },
        tmp_path / "worker.log",
        command=COMMANDS[how],
    ).start()
    try:
        worker.wait_healthy(timeout=120)
        status, body = worker.get("/health")
        assert (status, body["status"]) == (200, "ok")
        status, detailed = worker.get("/health/detailed")
        assert status == 200
        assert detailed["app_id"] == f"e2e-health-{unique}"
        assert "tasks" in detailed
        # the backlog comes from every stage's consumer-group lag, the router's included
        backlog = await_backlog(worker)
        assert {"router", "assembler", "watch"} <= set(backlog), backlog
        status, metrics = worker.get("/metrics")
        assert status == 200
        assert "python_info" in metrics
        assert "album_pipeline_build_info{" in metrics
        assert 'kafka_consumergroup_lag{stage="router",topic="albums.parsed"}' in metrics
        # the router's own counters, from its stage process, once it runs
        deadline = time.monotonic() + 60
        while 'stage_records_total{stage="router"}' not in metrics:
            assert time.monotonic() < deadline, metrics
            time.sleep(0.5)
            _status, metrics = worker.get("/metrics")
        # RocksDB tables live under DATA_DIR, not in the working directory
        assert (tmp_path / "data" / "faust").is_dir()
        # the data views want the token the worker made (WEB_AUTH_TOKEN is unset here)
        token = tmp_path / "data" / "web-token"
        assert oct(token.stat().st_mode & 0o777) == "0o600"
        assert worker.token() == token.read_text().strip()
        for path in ("/health/detailed", "/table/album_state/1/", "/stores/1/?tenant_id=acme"):
            status, body = worker.get(path, auth=False)
            assert status == 401, (path, body)
        for path in ("/health", "/metrics"):
            assert worker.get(path, auth=False)[0] == 200
        # the worker reaches its stage processes' ports with the token
        status, detailed = worker.get("/health/detailed")
        assert detailed["processes"]["router"]["status"] == "running", detailed["processes"]
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
