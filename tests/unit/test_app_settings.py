"""Faust must not pick our environment variables up as its own settings."""

from __future__ import annotations

import subprocess
import sys


def test_processing_guarantee_in_the_environment_does_not_switch_fausts_transactions_on() -> None:
    # Faust reads PROCESSING_GUARANTEE itself and lets it win over App(...) arguments; with
    # exactly_once it would run its own transactions, which lose events under SIGKILL.
    code = (
        "from streams.app import app; from streams.settings import settings; "
        "print(app.conf.processing_guarantee.value, settings.processing_guarantee)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PROCESSING_GUARANTEE": "exactly_once", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["at_least_once", "exactly_once"]


def test_fausts_own_exactly_once_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import streams.app"],
        env={"FAUST_PROCESSING_GUARANTEE": "exactly_once", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "FAUST_PROCESSING_GUARANTEE must stay at_least_once" in out.stderr
