"""One driver for the table agents: batches of events, keyed state in memory, one write per key.

The assembler and the post index are state machines over a Faust table (`KeyedLogic`). The
driver runs them a batch at a time:

1. take a batch from the stream (`noack_take`) and group it by partition;
2. apply every event in order, reading each key's state once (from a cache of decoded states,
   else from the table) and keeping the batch's changes in memory;
3. send everything the batch emits, forwards and dead letters together, and wait once for the
   broker to have all of it. This comes *before* the table writes that record the sends: Faust
   writes the changelog at once, so a crash between a recorded and an unsent emission would
   lose it. A crash after the sends repeats them, which every consumer absorbs;
4. write each touched key once, in its own partition (Faust takes a table write's partition
   from the current event, so it is set to an event of that partition), then acknowledge.

The due index (deadlines, expiries) and the cache are derived from the table: both are rebuilt
when the assignment changes, and dropped if a batch fails half-way.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from faust import EventT, StreamT
from faust.streams import _current_event
from faust.types import TableT

from agents.direct import Message, send_direct, send_until_done
from schemas.validation import InvalidEvent
from tables.due import DueIndex

log = logging.getLogger(__name__)

S = TypeVar("S")


class KeyedLogic(Protocol[S]):
    """A state machine over one table, as the driver runs it (pure but for the batch it writes)."""

    #: stage name in logs and dead letters
    stage: str

    def decode(self, raw: dict[str, Any]) -> S: ...

    def encode(self, state: S) -> dict[str, Any]: ...

    def due_of(self, raw: dict[str, Any]) -> tuple[int | None, float | None]:
        """The stored partition and next due time of an encoded state (read on rebuilds)."""
        ...

    def handle(self, batch: KeyedBatch[S], key: Any, msg: dict[str, Any], now: float) -> None:
        """Apply one message; raise for one that cannot be applied (it is dead-lettered)."""
        ...

    def on_due(self, batch: KeyedBatch[S], key: str, now: float) -> None:
        """Time alone may change `key`'s state (its due time passed)."""
        ...

    def dead_letter(
        self, key: Any, msg: dict[str, Any], partition: int, offset: int, error: BaseException
    ) -> Message:
        """The albums.dlq record of a message `handle` refused."""
        ...

    def indexed(self, key: str, raw: dict[str, Any] | None) -> None:
        """A key's stored state changed (None: deleted), or the index is rebuilt."""
        ...

    def reset_index(self) -> None:
        """The derived indexes are about to be rebuilt from the table."""
        ...


class KeyedBatch(Generic[S]):
    """One partition's share of a batch: the state read and changed, the messages to send."""

    def __init__(self, driver: KeyedDriver[S], partition: int) -> None:
        self.driver = driver
        self.partition = partition
        self.changed: dict[str, S | None] = {}
        self.sends: list[Message] = []
        self.after_sent: list[Callable[[], None]] = []

    def get(self, key: str) -> S | None:
        if key in self.changed:
            return self.changed[key]
        return self.driver.load(key)

    def put(self, key: str, state: S) -> None:
        self.changed[key] = state

    def delete(self, key: str) -> None:
        self.changed[key] = None

    def send(self, message: Message, after_sent: Callable[[], None] | None = None) -> None:
        """Send with the batch (before its table writes); `after_sent` once the broker has it."""
        self.sends.append(message)
        if after_sent is not None:
            self.after_sent.append(after_sent)

    def pop_due(self, now: float) -> list[str]:
        return self.driver.due.pop_due(self.partition, now)


class KeyedDriver(Generic[S]):
    """Runs a `KeyedLogic` over its table, a batch at a time (see the module docstring).

    Args:
        logic: the state machine.
        table: the Faust table it owns (written by nothing else).
        topic: the name of the topic the agent reads (its partitions are the table's).
        assignment: returns the partitions of `topic` this worker has now.
        batch_size, batch_seconds: a batch is at most this many events or this old.
        cache_size: decoded states kept between batches (0: none).
        send: sends messages and returns once the broker has every one.
        after_batch: called after each batch is written (gauges).
    """

    def __init__(
        self,
        logic: KeyedLogic[S],
        table: TableT[Any, Any],
        *,
        topic: str,
        assignment: Callable[[], frozenset[int]],
        batch_size: int = 1000,
        batch_seconds: float = 0.05,
        cache_size: int = 50_000,
        send: Callable[[Sequence[Message]], Any] = send_direct,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.after_batch = after_batch
        self.logic = logic
        self.table = table
        self.topic = topic
        self.assignment = assignment
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.cache_size = cache_size
        self.send = send
        self.due = DueIndex()
        self._cache: OrderedDict[str, S] = OrderedDict()
        self.started_at: float | None = None
        self.batches = 0
        self.events = 0

    # -- state --------------------------------------------------------------------------------

    def load(self, key: str) -> S | None:
        """The stored state of `key` (the current event must be of the key's partition)."""
        state = self._cache.get(key)
        if state is not None:
            self._cache.move_to_end(key)
            return state
        raw = self.table.get(key)
        if raw is None:
            return None
        state = self.logic.decode(raw)
        self._remember(key, state)
        return state

    def _remember(self, key: str, state: S) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = state
        self._cache.move_to_end(key)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def rebuild(self, assignment: frozenset[int]) -> None:
        """Derive the due index (and the logic's own indexes) from the table this worker owns."""
        t0 = time.monotonic()
        self._cache.clear()
        self.due.clear(assignment)
        self.logic.reset_index()
        for key, raw in self.table.items():
            partition, due = self.logic.due_of(raw)
            if partition is not None:
                self.due.set(partition, key, due)
            self.logic.indexed(key, raw)
        log.info(
            "%s: %d states on partitions %s indexed in %.2fs",
            self.logic.stage,
            len(self.due),
            sorted(assignment),
            time.monotonic() - t0,
        )

    def invalidate(self) -> None:
        """Forget what was derived: the next batch rebuilds it from the table.

        Called at every rebalance (a partition that leaves and comes back between two batches
        would otherwise keep states its other owner has changed meanwhile) and when a batch
        fails half-way."""
        self._cache.clear()
        self.due.assignment = None

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stream: StreamT[Any]) -> None:
        """The agent's body: every batch of `stream` through the logic, then acknowledged."""
        self.started_at = time.time()
        async for events in stream.noack_take(  # type: ignore[attr-defined]
            self.batch_size, within=self.batch_seconds
        ):
            try:
                await self.process(events)
            except BaseException:
                # state in memory may be ahead of the table: derive it again
                self.invalidate()
                raise
            for event in events:
                await stream.ack(event)

    async def process(self, events: Sequence[EventT[Any]]) -> None:
        """Apply, send, write one batch (acknowledging is the caller's)."""
        assignment = self.assignment()
        if self.due.assignment != assignment:
            self.rebuild(assignment)
        now = time.time()
        batches: dict[int, tuple[KeyedBatch[S], list[EventT[Any]]]] = {}
        for event in events:
            partition = event.message.partition
            if partition not in batches:
                batches[partition] = (KeyedBatch(self, partition), [])
            batch, evs = batches[partition]
            evs.append(event)
            _set_current_event(event)
            self._apply(batch, event, now)
        sends = [m for batch, _ in batches.values() for m in batch.sends]
        if sends:
            await send_until_done(self.send, sends, self.logic.stage)
            for batch, _ in batches.values():
                for callback in batch.after_sent:
                    callback()
        for batch, evs in batches.values():
            _set_current_event(evs[-1])
            self._write(batch)
        self.batches += 1
        self.events += len(events)
        if self.after_batch is not None:
            self.after_batch()

    def _apply(self, batch: KeyedBatch[S], event: EventT[Any], now: float) -> None:
        msg: dict[str, Any] = event.value if isinstance(event.value, dict) else {}
        try:
            if msg.get("type") == "tick":
                for key in batch.pop_due(now):
                    self.logic.on_due(batch, key, now)
            else:
                self.logic.handle(batch, event.key, msg, now)
        except Exception as exc:
            # never let one event stop the agent: it goes to the DLQ with its origin
            if not isinstance(exc, InvalidEvent):
                log.exception("%s failed on %r", self.logic.stage, event.key)
            batch.sends.append(
                self.logic.dead_letter(
                    event.key, msg, event.message.partition, event.message.offset, exc
                )
            )

    def _write(self, batch: KeyedBatch[S]) -> None:
        for key, state in batch.changed.items():
            if state is None:
                if key in self._cache or self.table.get(key) is not None:
                    del self.table[key]
                self._cache.pop(key, None)
                self.due.discard(key)
                self.logic.indexed(key, None)
                continue
            raw = self.logic.encode(state)
            self.table[key] = raw
            self._remember(key, state)
            _, due = self.logic.due_of(raw)
            self.due.set(batch.partition, key, due)
            self.logic.indexed(key, raw)


T = TypeVar("T")


def internal(read: Callable[[dict[str, Any]], T], msg: dict[str, Any], field: str) -> T:
    """An event of an internal command, read without validating it again (the router did);
    a command that is not what we write is a clear InvalidEvent, not a KeyError."""
    try:
        return read(msg[field])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidEvent(
            "malformed_command", f"{field!r} of an internal command: {exc!r}"
        ) from exc


def _set_current_event(event: EventT[Any]) -> None:
    # what Faust's stream iteration does for each event; table reads and writes use it
    _current_event.set(weakref.ref(event))
