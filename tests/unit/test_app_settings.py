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
