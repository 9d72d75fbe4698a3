"""Worker processes for end-to-end tests: start with its own env, wait for /health, stop by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """One `python -m streams worker` (or any command) with env overrides and a log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        command: list[str] | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.web_port = int(env["WEB_PORT"])
        self.log_path = log_path
        self.command = command or [sys.executable, "-m", "streams", "worker", "-l", "info"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def token(self) -> str | None:
        """The bearer token of the worker's web port: WEB_AUTH_TOKEN, or the one the worker
        made in its DATA_DIR (None before it has)."""
        if self.env.get("WEB_AUTH_TOKEN"):
            return self.env["WEB_AUTH_TOKEN"]
        path = Path(self.env.get("DATA_DIR", ".stack/data"))
        path = (path if path.is_absolute() else REPO_ROOT / path) / "web-token"
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def get(self, path: str, timeout: float = 5.0, *, auth: bool = True) -> tuple[int, Any]:
        """GET a path of the worker's web server (with its bearer token unless `auth` is
        False): (status, decoded JSON or text)."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        request = urllib.request.Request(url)
        token = self.token() if auth else None
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited early:\n{self.tail()}")
            try:
                status, _ = self.get("/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"worker not healthy within {timeout}s:\n{self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
