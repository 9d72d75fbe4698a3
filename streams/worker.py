"""The worker class of the app: discards local table state after an unclean shutdown.

It also leaves out Faust's terminal spinner (see `Worker._setup_spinner_handler`).

Faust writes RocksDB at once but the changelog (and, with exactly_once, the transaction that
holds it) later, and never rolls the local store back. After a crash the local store can hold
writes the changelog does not (aborted or never acknowledged), and re-delivered events would
then look like duplicates and be skipped, losing what they should have sent. So, as Kafka
Streams does, a worker that finds its previous run did not stop cleanly deletes its local tables
and restores them from the changelogs, the only state that is known to be committed.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import faust

from streams.kafka_io import ensure_topics
from streams.settings import settings
from streams.topics import ALBUM_EVENTS, POST_EVENTS

log = logging.getLogger(__name__)

MARKER = "RUNNING"


def discard_state_after_crash(table_dir: Path) -> bool:
    """Delete `table_dir`'s contents if the marker of a running worker is still there."""
    marker = table_dir / MARKER
    if not marker.exists():
        return False
    log.warning(
        "previous worker (%s) did not stop cleanly: discarding local tables in %s, "
        "they are restored from their changelogs",
        marker.read_text().strip() or "pid unknown",
        table_dir,
    )
    for child in table_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    return True


def crash_of(services: Iterable[Any]) -> BaseException | None:
    """The crash reason of the first of `services` (mode services, Faust agents) that
    crashed, or None when none did."""
    for service in services:
        reason = getattr(service, "crash_reason", None)
        if reason is not None:
            return cast(BaseException, reason)
        if getattr(service, "crashed", False):
            return RuntimeError(f"{service!r} crashed")
    return None


def tune_gc() -> None:
    """Python's cyclic GC with GC_THRESHOLD, and every object of the start-up frozen out of it.

    With the default thresholds (700, 10, 10) a worker at full load spent about a third of its
    time in collections: each batch allocates tens of thousands of short-lived dicts, and the
    decoded-state cache keeps hundreds of thousands of objects that every older-generation
    collection walks again. Measured on the assembler benchmark (README, "Throughput").
    """
    gc.set_threshold(*settings.gc_thresholds)
    gc.freeze()


class Worker(faust.Worker):
    """faust.Worker plus the crash marker around the app's run, without the log spinner."""

    def _setup_spinner_handler(self, logger: logging.Logger, level: int) -> None:
        # At --loglevel warn and above Faust's terminal spinner sets the root logger to DEBUG so
        # that every debug call turns it: each send of aiokafka then built a log record nobody
        # printed (11% of the worker's time in the assembler benchmark). No spinner here.
        self.spinner = None

    async def on_first_start(self) -> None:
        tune_gc()
        table_dir = settings.table_dir
        table_dir.mkdir(parents=True, exist_ok=True)
        discard_state_after_crash(table_dir)
        (table_dir / MARKER).write_text(f"pid {os.getpid()}\n")
        # The agents' topics exist before Faust's consumer subscribes: a worker that joined
        # while another was creating them kept "topic not found" in its metadata, and as the
        # group's leader after a failover it left their partitions unassigned (the pipeline
        # stood still until its next metadata refresh, 2 minutes in tests/e2e/test_cluster.py).
        await ensure_topics([ALBUM_EVENTS, POST_EVENTS], settings.topic_partitions)
        await super().on_first_start()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        reason = crash_of([self, self.app, *self.app.agents.values()])
        if reason is not None:
            # an orderly stop after a crash is no clean stop: keep the marker, so the next
            # start restores the tables from their changelogs
            log.warning("worker stopped after a crash (%r): local tables kept marked", reason)
            return
        # every service has stopped cleanly: the changelogs hold what the local store holds
        (settings.table_dir / MARKER).unlink(missing_ok=True)
