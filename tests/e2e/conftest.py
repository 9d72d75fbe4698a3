"""End-to-end tier: real worker processes against the local stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.pipeline import Pipeline
from tests.integration.conftest import kafka

__all__ = ["kafka", "pipeline"]


@pytest.fixture
def pipeline(kafka: list[str], tmp_path: Path, unique: str) -> Iterator[Pipeline]:
    """An isolated pipeline: its own topic prefix, app id (group), data dirs and web ports."""
    p = Pipeline(servers=kafka, unique=unique, tmp=tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
