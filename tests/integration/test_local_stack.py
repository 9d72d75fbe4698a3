"""The local stack's scripts: status tells which server is up; a second `up` is a no-op."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import yaml

from streams.settings import Settings
from tests.conftest import free_port
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


def test_prometheus_has_loaded_every_rule_of_alerts_yml() -> None:
    rules = yaml.safe_load((REPO_ROOT / "compose/prometheus/alerts.yml").read_text())
    names = [r.get("alert") or r["record"] for g in rules["groups"] for r in g["rules"]]
    url = Settings.from_env().prometheus_url
    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as r:
        loaded = json.load(r)["data"]["groups"]
    assert [g["name"] for g in loaded] == [g["name"] for g in rules["groups"]]
    assert [r["name"] for g in loaded for r in g["rules"]] == names
    assert all(r["health"] != "err" for g in loaded for r in g["rules"])


def test_prometheus_does_not_start_with_broken_rules(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(\n")
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "compose/local/services/prometheus.sh"), "up"],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "STACK_DIR": str(tmp_path / "stack"),
            "PROMETHEUS_PORT": str(free_port()),
            "PROMETHEUS_RULES": str(broken),
        },
        timeout=120,
    )
    assert out.returncode != 0
    assert "invalid rules" in out.stderr, out.stderr
    assert not (tmp_path / "stack" / "run" / "prometheus.pid").exists()
