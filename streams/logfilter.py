"""Repeated client errors, logged once per window instead of thousands of times a second.

While the broker is away, aiokafka's producer sender retries a metadata update every time the
last one fails, without a pause (it waits on the update itself, and a refused connection
answers at once): a worker logged about 4,000 lines a second, 240,000 in a one-minute outage
(tests/e2e/test_broker_restart.py). A long outage would fill the disk with one line. Here the
aiokafka loggers let the same message (its template, not its arguments) through once per
`window` seconds, with the count of what was left out since. Only warnings and errors: the
client's INFO lines (a group joined, partitions assigned) are few, and each one tells which
group and partitions; folded together they hid a rebalance of one group behind another's.
"""

from __future__ import annotations

import logging
import time

#: the aiokafka loggers that repeat while a broker is away
LOGGERS = (
    "aiokafka",
    "aiokafka.client",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.producer.sender",
    "aiokafka.producer.producer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
)


class RepeatFilter(logging.Filter):
    """Passes a warning or error whose (logger, level, template) was not passed in the last
    `window` seconds; counts the others and says how many with the next one passed."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.window:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} [{seen[1]} more like this in the last {self.window:g}s]"
        if len(self._last) > 10_000:
            self._last.clear()  # bounded: templates are few, but be safe
        self._last[key] = (now, 0)
        return True


def install(window: float = 10.0) -> RepeatFilter:
    """Put one RepeatFilter on every aiokafka logger of LOGGERS (idempotent)."""
    shared = RepeatFilter(window)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(shared)
    return shared
