"""A stop after a crash is no clean stop: the worker keeps its crash marker then."""

from __future__ import annotations

from mode import Service

from streams.worker import crash_of


async def test_crash_of_names_the_first_crashed_service() -> None:
    quiet, broken = Service(), Service()
    assert crash_of([quiet, broken]) is None
    reason = RuntimeError("boom")
    await broken.crash(reason)
    assert crash_of([quiet, broken]) is reason
    await broken.stop()
    # stopping does not clear it
    assert crash_of([quiet, broken]) is reason
