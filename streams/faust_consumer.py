"""Faust's aiokafka consumer with a fetch loop that never drops an unprocessed record.

faust-streaming's `Consumer._drain_messages` silently drops every fetched record whose offset
is below the partition's "read offset" (the last offset it handed to the streams). That read
offset is written even when the hand-over was cut short by a rebalance (`suspend_flow`), and a
batch fetched around a rebalance can move it past records that were then cleared from the
agents' buffers. Those records are never processed by the current worker; when later offsets of
the partition are acknowledged, their commit carries the group past them. Under SIGKILL tests
this lost a record in about one run in five (see README, "Delivery guarantees and crashes").

Here a record below the read offset is dropped only when it is known to be done: acknowledged
in this assignment or below the committed offset. Otherwise it is delivered again (at-least-
once: the agents are idempotent) and the event is logged, so the case stays visible.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from mode import Service

log = logging.getLogger(__name__)

__all__ = ["SafeConsumer", "SafeTransport"]


class SafeConsumer(aiokafka_driver.Consumer):
    """The aiokafka driver's consumer with `_drain_messages` fixed as described above."""

    redelivered: int = 0

    def _already_done(self, tp: Any, offset: int) -> bool:
        committed = self._committed_offset.get(tp)
        if committed is not None and offset < committed:
            return True
        return offset in self._acked_index.get(tp, ())

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
                            SafeConsumer.redelivered += 1
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
                                # offsets Kafka did not return (transaction markers, compaction)
                                # count as done; logged since a wrong gap would skip records
                                log.info("%s: gap of offsets [%d, %d)", tp, r_offset + 1, offset)
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


class SafeTransport(aiokafka_driver.Transport):
    """The aiokafka transport with SafeConsumer."""

    Consumer = SafeConsumer
