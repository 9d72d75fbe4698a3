"""The worker starts both ways (`python -m streams worker`, `faust -A streams.app worker`)."""

from __future__ import annotations

import sys
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
        status, metrics = worker.get("/metrics")
        assert status == 200
        assert "python_info" in metrics
        # RocksDB tables live under DATA_DIR, not in the working directory
        assert (tmp_path / "data" / "faust").is_dir()
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
