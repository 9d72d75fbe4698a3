"""A Prometheus server of a test's own (Debian's binary, installed by `make stack-up`): it loads
the real compose/prometheus/alerts.yml, scrapes the test's processes every second and evaluates
every second, and answers PromQL through its HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.workers import REPO_ROOT

RULES = REPO_ROOT / "compose" / "prometheus" / "alerts.yml"
DASHBOARD = REPO_ROOT / "compose" / "grafana" / "dashboards" / "album_pipeline.json"


class PrometheusProcess:
    """One Prometheus with `targets` as {job: "host:port"}, stopped by its pid."""

    def __init__(self, home: Path, targets: dict[str, str], interval: str = "1s") -> None:
        self.home = home
        self.targets = targets
        self.interval = interval
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusProcess:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed; `make test` installs it (make stack-up)")
        self.home.mkdir(parents=True, exist_ok=True)
        scrape = [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target]}],
            }
            for job, target in self.targets.items()
        ]
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(RULES)],
            "scrape_configs": scrape,
        }
        path = self.home / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        with (self.home / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={self.home / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert self.proc.poll() is None, self.tail()
            time.sleep(0.3)
        else:
            pytest.fail(f"prometheus did not become ready:\n{self.tail()}")
        groups = self.api("/api/v1/rules")["groups"]
        assert groups, f"prometheus loaded no rules from {RULES}:\n{self.tail()}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        path = self.home / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        """The raw answer (status and data or error): a panel's query may fail, and the caller
        reports which."""
        params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        url = f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with Prometheus's error
            return dict(json.loads(exc.read()))

    def firing(self) -> dict[str, list[dict[str, str]]]:
        """Alerts firing now: name → the labels of each."""
        out: dict[str, list[dict[str, str]]] = {}
        for alert in self.api("/api/v1/alerts")["alerts"]:
            if alert["state"] == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return out

    def wait_firing(self, name: str, within: float) -> float | None:
        """Seconds until `name` fires, or None if it does not within `within` seconds."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            if name in self.firing():
                return time.monotonic() - started
            time.sleep(1)
        return None
