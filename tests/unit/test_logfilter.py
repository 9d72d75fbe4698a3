"""The aiokafka loggers pass a repeated message once per window, with the count left out."""

from __future__ import annotations

import logging

import pytest

from streams import logfilter


def test_a_repeated_message_passes_once_per_window(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(logfilter.time, "monotonic", lambda: now[0])
    log = logging.getLogger("aiokafka.client.test-repeat")
    log.addFilter(logfilter.RepeatFilter(window=10))
    with caplog.at_level(logging.ERROR, logger=log.name):
        for i in range(4000):  # a second of a broker outage
            log.error("Unable connect to node with id %s: %s", 1, f"refused {i}")
            now[0] += 0.00025
        log.error("another message")
        now[0] += 10
        log.error("Unable connect to node with id %s: %s", 1, "refused again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Unable connect to node with id 1: refused 0",
        "another message",
        "Unable connect to node with id 1: refused again [3999 more like this in the last 10s]",
    ]


def test_install_covers_the_aiokafka_loggers_once() -> None:
    logfilter.install()
    logfilter.install()
    for name in logfilter.LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, logfilter.RepeatFilter) for f in filters) == 1


def test_info_lines_all_pass(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("aiokafka.consumer.test-info")
    log.addFilter(logfilter.RepeatFilter(window=10))
    with caplog.at_level(logging.INFO, logger=log.name):
        for group in ("router", "watch", "relay"):
            log.info("Setting newly assigned partitions %s for group %s", {0}, group)
    assert [r.getMessage() for r in caplog.records] == [
        f"Setting newly assigned partitions {{0}} for group {g}"
        for g in ("router", "watch", "relay")
    ]
