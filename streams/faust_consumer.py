"""Faust's aiokafka consumer, made to never commit past a record it has not processed.

Two holes in faust-streaming 0.15's offset bookkeeping lost records when a worker was killed
and restarted (seen in tests/e2e/test_crash.py; see README, "Delivery guarantees and crashes"):

1. Gaps. A record whose offset is more than one past the partition's "read offset" makes Faust
   count the offsets in between as done (they are taken for transaction markers). The read
   offset is reset to the committed offset when streams are seeked after recovery, while the
   fetch loop may still hand over the rest of a batch fetched before the seek: a gap of 16
   offsets on a topic that has none was logged right after a restart. Offsets in such a gap
   are committed whether or not they were processed. Our internal topics are dense (no
   transactions, no compaction), so here they never get gaps, and their commits must start
   exactly at the committed offset (Faust lets the first offset after it be missing).
2. Drops. A fetched record below the read offset is dropped as "already read", also when it
   was never processed. Here it is dropped only when known to be done (acknowledged, or below
   the committed offset); otherwise it is delivered again, which the idempotent agents absorb.

3. Skips. After a restart some records of a partition never reached the agent at all (the
   commit stayed at the first of them until the end of a crash test). A skipped record, or a
   commit held at the same offset for a few commit intervals, makes this consumer fetch the
   partition again from the committed offset (through the consumer's own thread, one target
   per partition at a time).

4. Skipped acks. A record that reaches a stream after a rebalance began (flow control
   suspended, or fetched in an earlier generation) is skipped by the stream *and acknowledged*
   (faust/streams.py and faust/_cython/streams.pyx: "ack the filtered out message otherwise the
   lag would increase"). Its offset is then committed although no agent processed it: with two
   workers starting together, 1,900 records of one partition were committed unprocessed this
   way (their albums came out `partial`). Here a record no stream started is never counted as
   done: the commit holds at it, and the seek to the committed offsets that ends every
   rebalance delivers it again.
5. Revoked partitions lose their committed offset before the last commit of the revoke (Faust
   pops it first), and Faust's rule then commits any run of acknowledged offsets, wherever it
   starts. Here the last committed offset known for a dense partition is kept as the base of
   its commits; a partition whose start is unknown is not committed at all.

Every one of these events is logged as a warning, so they stay visible. This overrides
faust-streaming 0.15.x internals (`_drain_messages` is a copy): re-check it on an upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar, cast

import faust.streams
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from mode import Service

from streams.health import health

log = logging.getLogger(__name__)

__all__ = ["SafeConsumer", "SafeTransport"]


class SafeConsumer(aiokafka_driver.Consumer):
    """The aiokafka driver's consumer with the fixes described above."""

    #: Topics with a record at every offset (no transactions, no compaction): the internal
    #: topics the table agents read. Set by the app before the worker starts.
    dense_topics: ClassVar[set[str]] = set()
    #: Commit checks a partition may stay held at the same offset before it is fetched again.
    held_checks_before_refetch: ClassVar[int] = 3

    #: Seconds before a re-fetch of the same partition from the same offset may be asked again.
    refetch_quiet_seconds: ClassVar[float] = 10.0
    #: At shutdown, how long to wait for events in flight before leaving them uncommitted.
    shutdown_wait_seconds: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[Any, tuple[int, int]] = {}
        self._refetching: dict[Any, tuple[int, float]] = {}
        #: first offset still in the log when retention deleted records nobody processed
        self._floor: dict[Any, int] = {}
        #: last committed offset known per partition; unlike Faust's, kept through a revoke
        self._base: dict[Any, int] = {}

    def _dense(self, tp: Any) -> bool:
        return tp.topic in self.dense_topics

    def _refetch(self, tp: Any, offset: int, why: str) -> None:
        """Seek back so records the fetch loop skipped are delivered (again); dropping stays
        limited to records known to be done, so this costs at most some re-deliveries.

        One request per partition at a time: records of a batch fetched before the seek still
        arrive after it and look like gaps; they must not move the target past the record we
        are after.
        """
        committed = self._committed_offset.get(tp)
        target = offset if committed is None else min(offset, committed)
        now = time.monotonic()
        pending = self._refetching.get(tp)
        if (
            pending is not None
            and pending[0] <= target
            and now - pending[1] < self.refetch_quiet_seconds
        ):
            return
        self._refetching[tp] = (target, now)
        health.consumer_refetches += 1
        log.warning("%s: fetching again from offset %d: %s", tp, target, why)
        task = asyncio.ensure_future(self._seek_back(tp, target))
        task.add_done_callback(_log_seek_failure)

    async def _seek_back(self, tp: Any, target: int) -> None:
        thread = cast(Any, self)._thread
        earliest = (await thread.earliest_offsets(tp)).get(tp)
        if earliest is not None and earliest > target:
            # retention deleted them before anyone processed them: nothing to fetch any more
            log.error(
                "%s: offsets %d..%d were deleted from the log before being processed",
                tp,
                target,
                earliest - 1,
            )
            self._floor[tp] = earliest
            return
        # through the consumer's own thread: aiokafka is not thread-safe
        await thread.seek_wait({tp: target})

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        if self._dense(tp):
            health.consumer_gaps_refused += 1
            self._refetch(
                tp, offset_from, f"offsets {offset_from}..{offset_to - 1} were skipped by the fetch"
            )
            return
        await super()._add_gap(tp, offset_from, offset_to)

    def ack(self, message: Any) -> bool:
        if not message.tracked:
            # Faust's skip path (see 4. above): no stream started this record
            health.consumer_skipped_acks_refused += 1
            return False
        return bool(super().ack(message))

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, then the base of every dense partition: its
        committed offset, or where auto_offset_reset=earliest starts it (its first offset)."""
        await super().perform_seek()
        missing = []
        for tp in self.assignment():
            if self._is_changelog_tp(tp):
                continue
            committed = self._committed_offset.get(tp)
            if committed is not None:
                self._base[tp] = committed
            elif self._dense(tp):
                missing.append(tp)
        if missing:
            earliest = await cast(Any, self)._thread.earliest_offsets(*missing)
            for tp in missing:
                if tp in earliest and self._committed_offset.get(tp) is None:
                    # Faust stores a committed offset of 0 as None
                    self._committed_offset[tp] = self._base[tp] = earliest[tp]

    def _new_offset(self, tp: Any) -> int | None:
        if not self._dense(tp):
            return super()._new_offset(tp)
        committed = self._committed_offset.get(tp)
        if committed is None:
            # revoked a moment ago (Faust dropped its offset) or not seeked yet
            committed = self._base.get(tp)
            if committed is None:
                return None
        else:
            self._base[tp] = committed
        acked = self._acked[tp]
        start = max(committed, self._floor.get(tp, committed))
        if acked and min(acked) < start:
            # acknowledgements of records committed meanwhile (re-deliveries): drop them
            self._acked_index[tp].difference_update(o for o in acked if o < start)
            acked[:] = [o for o in acked if o >= start]
        if not acked:
            return start if start > committed else None
        acked.sort()
        if acked[0] != start:
            # The record at the committed offset is not done while later ones are: with one
            # agent per topic that means it never arrived. Hold the commit; if that lasts,
            # fetch the partition again from there.
            offset, checks = self._held.get(tp, (start, 0))
            checks = checks + 1 if offset == start else 1
            self._held[tp] = (start, checks)
            if checks % self.held_checks_before_refetch == 0:
                self._refetch(tp, start, f"commit held at {start}, acked from {acked[0]}")
            return start if start > committed else None
        end = start
        for offset in acked:
            if offset != end:
                break
            end += 1
        done = acked[: end - start]
        del acked[: end - start]
        self._acked_index[tp].difference_update(done)
        self._held.pop(tp, None)
        self._refetching.pop(tp, None)
        return end

    def _already_done(self, tp: Any, offset: int) -> bool:
        committed = self._committed_offset.get(tp)
        if committed is not None and offset < committed:
            return True
        return offset in self._acked_index.get(tp, ())

    async def wait_empty(self) -> None:
        """At a rebalance, wait for every event in flight (a table's writer must finish before
        its partition moves). At shutdown, wait a bounded time: a table agent whose batch waits
        for an absent broker (agents/direct.send_until_done) holds it unacknowledged, and Faust
        would wait for it forever. What is still unacknowledged then is not committed and is
        processed again after the restart."""
        if not self.app.should_stop:
            await super().wait_empty()
            return
        # Faust's own loop swallows cancellation, so it cannot be bounded by wait_for
        deadline = time.monotonic() + self.shutdown_wait_seconds
        while self._unacked_messages and time.monotonic() < deadline:
            await self.commit()
            await asyncio.sleep(0.5)
            self._clean_unacked_messages()
        if self._unacked_messages:
            log.warning(
                "shutdown: %d events still unacknowledged after %.0fs; their offsets are not "
                "committed, they will be processed again",
                len(self._unacked_messages),
                self.shutdown_wait_seconds,
            )
        await self.commit_and_end_transactions()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - Faust plumbing
        # A copy of faust.transport.consumer.Consumer._drain_messages (0.15.x); the only change
        # is the drop decision, marked below.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        flag_consumer_fetching = CONSUMER_FETCHING
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        deliver = r_offset is None or offset >= r_offset
                        # --- the change: never drop a record that is not known to be done
                        if not deliver and not self._already_done(tp, offset):
                            deliver = True
                            health.consumer_redelivered += 1
                            log.warning(
                                "Delivering %s offset %d again: Faust's read offset %d is past "
                                "it but it was neither acknowledged nor committed",
                                tp,
                                offset,
                                r_offset,
                            )
                        if deliver:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, max(offset, r_offset or 0))
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


def _log_seek_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("seek for a re-fetch failed: %r", task.exception())


_FaustStreamIterator: Any = getattr(faust.streams, "_CStreamIterator", None)

if _FaustStreamIterator is not None:  # pragma: no branch - Faust is built with Cython here

    class SafeStreamIterator(_FaustStreamIterator):  # type: ignore[misc]
        """Faust's Cython stream iterator, without the ack of skipped records (4. above): it
        writes acks into the consumer's bookkeeping itself, past SafeConsumer.ack."""

        def after(self, event: Any, do_ack: Any, sensor_state: Any) -> Any:
            if do_ack and event is not None and not event.message.tracked:
                health.consumer_skipped_acks_refused += 1
                do_ack = False
            return super().after(event, do_ack, sensor_state)

    faust.streams._CStreamIterator = SafeStreamIterator  # type: ignore[attr-defined]


class SafeTransport(aiokafka_driver.Transport):
    """The aiokafka transport with SafeConsumer."""

    Consumer = SafeConsumer
