"""The local stack's scripts: status tells which server is up; a second `up` is a no-op."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.workers import REPO_ROOT

STACK = ["bash", str(REPO_ROOT / "compose/local/stack.sh")]
SERVICES = ["kafka", "postgres", "neo4j", "s3", "prometheus"]


def _pids() -> dict[str, str]:
    run = REPO_ROOT / ".stack" / "run"
    return {s: (run / f"{s}.pid").read_text().strip() for s in SERVICES}


def test_status_reports_every_server_up() -> None:
    out = subprocess.run([*STACK, "status"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    for s in SERVICES:
        assert f"{s}: up (pid " in out.stdout


def test_second_up_is_a_no_op() -> None:
    before = _pids()
    out = subprocess.run([*STACK, "up"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert _pids() == before
    assert out.stderr.count("already up") == len(SERVICES), out.stderr


def test_status_of_a_stopped_service_is_down(tmp_path: Path) -> None:
    # a separate STACK_DIR holds no pid files: every service there is down
    out = subprocess.run(
        [*STACK, "status", "kafka"],
        capture_output=True,
        text=True,
        check=False,
        env={"STACK_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 3
    assert out.stdout.strip() == "kafka: down"
