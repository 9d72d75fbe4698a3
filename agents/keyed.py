"""One driver for the table agents: batches of events, keyed state in memory, one write per key.

The assembler and the post index are state machines over a Faust table (`KeyedLogic`). The
driver runs them a batch at a time:

1. take a batch from the stream (`noack_take`) and group it by partition; each event is an
   envelope of commands for keys of its partition (agents/envelopes.py), or a tick;
2. apply every command in order, reading each key's state once (from a cache of decoded states,
   else from the table) and keeping the batch's changes in memory;
3. send everything the batch emits, forwards (in envelopes) and dead letters together, and wait
   once for the broker to have all of it. This comes *before* the table writes that record the
   sends, so a crash in between repeats an emission (every consumer absorbs that) and never
   loses one;
4. write each touched key once: its changelog records, acknowledged, then one local RocksDB
   batch per partition with the persisted offset (agents/table_store.py); then acknowledge.

The due index (deadlines, expiries) and the cache are derived from the table: both are rebuilt
when the assignment changes, and dropped if a batch fails half-way.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import orjson
from faust import EventT, StreamT

from agents.direct import Message, send_direct, send_until_done
from agents.dlq import dead_letter_message
from agents.envelopes import Envelopes, commands_of
from agents.table_store import TableStore, UnreadableRow, Write
from schemas.validation import InvalidEvent
from streams import metrics
from tables.due import DueIndex
from tables.stream_time import StreamClock, Times

log = logging.getLogger(__name__)

S = TypeVar("S")


class KeyedLogic(Protocol[S]):
    """A state machine over one table, as the driver runs it (pure but for the batch it writes)."""

    #: stage name in logs and dead letters
    stage: str

    def decode(self, raw: dict[str, Any]) -> S: ...

    def encode(self, state: S) -> dict[str, Any]: ...

    def due(self, state: S) -> float | None:
        """When time alone may change `state` (None: never)."""
        ...

    def due_of(self, raw: dict[str, Any]) -> float | None:
        """The same, of an encoded state (read on rebuilds without decoding it)."""
        ...

    def handle(self, batch: KeyedBatch[S], key: Any, msg: dict[str, Any], now: Times) -> None:
        """Apply one command; raise for one that cannot be applied (it is dead-lettered)."""
        ...

    def on_due(self, batch: KeyedBatch[S], key: str, now: Times) -> None:
        """Time alone may change `key`'s state (its due time passed in stream time)."""
        ...

    def dead_letter(
        self, key: Any, msg: dict[str, Any], partition: int, offset: int, error: BaseException
    ) -> Message:
        """The albums.dlq record of a command `handle` refused."""
        ...

    def indexed(self, key: str, raw: dict[str, Any] | None) -> None:
        """A key's stored state changed (None: deleted), or the index is rebuilt."""
        ...

    def reset_index(self) -> None:
        """The derived indexes are about to be rebuilt from the table."""
        ...


class KeyedBatch(Generic[S]):
    """One partition's share of a batch: the state read and changed, the messages to send."""

    def __init__(self, driver: KeyedDriver[S], partition: int, envelopes: Envelopes) -> None:
        self.driver = driver
        self.partition = partition
        self.changed: dict[str, S | None] = {}
        #: the stored state of each key read, as it was before the batch
        self.original: dict[str, S | None] = {}
        self.sends: list[Message] = []
        self.after_sent: list[Callable[[], None]] = []
        #: keys whose stored row could not be read: deleted unless the batch writes them anew
        self.unreadable: set[str] = set()
        self._envelopes = envelopes

    def get(self, key: str) -> S | None:
        if key in self.changed:
            return self.changed[key]
        state = self.driver.load(self.partition, key)
        self.original.setdefault(key, state)
        return state

    def put(self, key: str, state: S) -> None:
        self.changed[key] = state

    def delete(self, key: str) -> None:
        self.changed[key] = None

    def send(self, message: Message, after_sent: Callable[[], None] | None = None) -> None:
        """Send with the batch (before its table writes); `after_sent` once the broker has it."""
        self.sends.append(message)
        if after_sent is not None:
            self.after_sent.append(after_sent)

    def forward(self, topic: str, key: str, command: dict[str, Any]) -> None:
        """A command for another internal topic, sent in its envelope with the batch."""
        self._envelopes.add(topic, key, command)

    def pop_due(self, now: float) -> list[str]:
        return self.driver.due.pop_due(self.partition, now)


class KeyedDriver(Generic[S]):
    """Runs a `KeyedLogic` over its table, a batch at a time (see the module docstring).

    Args:
        logic: the state machine.
        store: the table it owns (written by nothing else).
        topic: the name of the topic the agent reads (its partitions are the table's).
        assignment: returns the partitions of `topic` this worker has now.
        partitions: the partition count of the internal topics (for forwarded envelopes).
        batch_size, batch_seconds: a batch is at most this many events or this old.
        cache_size: decoded states kept between batches (0: none).
        send: sends messages and returns once the broker has every one: the last offset
            written per (topic, partition).
        after_batch: called after each batch is written (gauges).
        clock: stream time of the partitions (tables/stream_time.py): due times are compared
            with it, not with the wall clock.
        wall: the wall clock (stamps only).
        watermarks_to: the internal topic this driver forwards commands to, if any: every
            batch then tells each of its partitions, after the forwards, how far the stream
            time of the partitions it read has come (a forward comes a hop later than the
            router's own commands; without this, the stage downstream could pass a deadline
            with a forward still on its way).
    """

    def __init__(
        self,
        logic: KeyedLogic[S],
        store: TableStore,
        *,
        topic: str,
        assignment: Callable[[], frozenset[int]],
        partitions: int,
        batch_size: int = 1000,
        batch_seconds: float = 0.05,
        cache_size: int = 50_000,
        send: Callable[[Sequence[Message]], Awaitable[Any]] = send_direct,
        after_batch: Callable[[], None] | None = None,
        clock: StreamClock | None = None,
        wall: Callable[[], float] = time.time,
        watermarks_to: str | None = None,
    ) -> None:
        self.watermarks_to = watermarks_to
        #: per partition: the watermark last sent and when (monotonic)
        self._marks: dict[int, tuple[float, float]] = {}
        self.after_batch = after_batch
        self.clock = clock or StreamClock(0.0)
        self.wall = wall
        self.logic = logic
        self.store = store
        self.topic = topic
        self.assignment = assignment
        self.partitions = partitions
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.cache_size = cache_size
        self.send = send
        self.due = DueIndex()
        #: states stored in this worker's partitions of the table
        self.states = 0
        self._cache: OrderedDict[str, S] = OrderedDict()
        #: rows found unreadable (partition, key, raw bytes, reason), sent to the DLQ and
        #: deleted by the next batch
        self._unreadable: list[tuple[int, str, bytes, str]] = []
        self.started_at: float | None = None
        self.batches = 0
        self.events = 0
        self.commands = 0

    # -- state --------------------------------------------------------------------------------

    def load(self, partition: int, key: str) -> S | None:
        """The stored state of `key` (of `partition`)."""
        state = self._cache.get(key)
        if state is not None:
            self._cache.move_to_end(key)
            return state
        try:
            raw = self.store.get(partition, key)
            if raw is None:
                return None
            state = self.logic.decode(raw)
        except UnreadableRow as row:
            self._unreadable.append((partition, key, row.raw, str(row)))
            return None
        except Exception as exc:  # JSON, but not a state this version reads
            self._unreadable.append((partition, key, orjson.dumps(raw), _reason(exc)))
            return None
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
        self.clock.assign(assignment)
        self.logic.reset_index()
        self.states = 0
        for partition, key, raw in self.store.items(assignment):
            self.states += 1
            if isinstance(raw, UnreadableRow):
                self._unreadable.append((partition, key, raw.raw, str(raw)))
                continue
            try:
                self.due.set(partition, key, self.logic.due_of(raw))
                self.logic.indexed(key, raw)
            except Exception as exc:
                # a row this version cannot read goes to the DLQ with the next batch
                self._unreadable.append((partition, key, orjson.dumps(raw), _reason(exc)))
        log.info(
            "%s: %d states on partitions %s indexed in %.2fs",
            self.logic.stage,
            self.states,
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
        metrics.touch_stage(self.logic.stage)
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
        wall = self.wall()
        envelopes = Envelopes(self.partitions)
        batches: dict[int, KeyedBatch[S]] = {}
        for event in events:
            partition = event.message.partition
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = KeyedBatch(self, partition, envelopes)
            self._apply(batch, event, wall)
        self._flush_unreadable(batches, envelopes)
        if self.watermarks_to is not None:
            self._watermarks(batches, envelopes)
        sends = [m for batch in batches.values() for m in batch.sends]
        sends += envelopes.messages()
        if sends:
            await send_until_done(self.send, sends, self.logic.stage)
            for batch in batches.values():
                for callback in batch.after_sent:
                    callback()
        await self._write(list(batches.values()))
        self.batches += 1
        self.events += len(events)
        metrics.stage_records_total.labels(self.logic.stage).inc(len(events))
        metrics.stage_batches_total.labels(self.logic.stage).inc()
        if self.after_batch is not None:
            self.after_batch()

    def _apply(self, batch: KeyedBatch[S], event: EventT[Any], wall: float) -> None:
        value = event.value
        partition = batch.partition
        stamp = getattr(event.message, "timestamp", None)
        written = float(stamp) if isinstance(stamp, int | float) and stamp > 0 else None
        if isinstance(value, dict) and value.get("type") == "tick":
            if written is not None:
                # a tick carries nothing: everything before it in the partition has been read
                self.clock.read(partition, written)
            self._tick(batch, event, value, wall)
            return
        try:
            self._commands(batch, event, value, written, wall)
        finally:
            if written is not None:
                self.clock.read(partition, written)

    def _tick(self, batch: KeyedBatch[S], event: EventT[Any], value: Any, wall: float) -> None:
        """Time passed: the keys whose due time the partition's stream time has reached."""
        partition = batch.partition
        stream = self.clock.now(partition)
        if stream is None:
            return  # stream time unknown yet: nothing can be due
        now = Times(stream, stream, wall)
        for key in batch.pop_due(stream):
            try:
                state = batch.get(key)
                due = None if state is None else self.logic.due(state)
                if due is None or due > stream:
                    continue  # deleted, or scheduled again since (DueIndex keeps both)
                self.logic.on_due(batch, key, now)
            except Exception as exc:
                # one album that fails never holds back the others due with it
                self._refuse(batch, event, key, value, exc)

    def _commands(
        self,
        batch: KeyedBatch[S],
        event: EventT[Any],
        value: Any,
        written: float | None,
        wall: float,
    ) -> None:
        """The commands of one message, at their event times (`written`, the message's own
        Kafka timestamp, for a command that carries none)."""
        partition = batch.partition
        # stream time as it was before this message: a command is never judged against the
        # records that come after it in the same envelope
        stream = self.clock.now(partition)
        commands = list(commands_of(event.key, value))
        low: float | None = None
        stamps: list[float | None] = []
        for _, command in commands:
            ts, source = _event_time(command)
            if ts is None and written is not None:
                ts, source = written, ("envelope",)
            stamps.append(ts)
            if ts is None:
                continue
            low = ts if low is None or ts < low else low
            if source is not None:
                sticky = command.get("type") == "watermark"
                self.clock.observe(partition, ts, source, sticky=sticky)
        if stream is None:
            stream = low if low is not None else wall
        for (key, command), ts in zip(commands, stamps, strict=True):
            if command.get("type") == "watermark":
                continue  # observed above: it only moves stream time
            self.commands += 1
            try:
                self.logic.handle(batch, key, command, Times(stream, ts or stream, wall))
            except Exception as exc:
                self._refuse(batch, event, key, command, exc)

    def _watermarks(self, batches: dict[int, KeyedBatch[S]], envelopes: Envelopes) -> None:
        """After this batch's forwards: the stream time of each partition read, to every
        partition of `watermarks_to` (when it moved, or to keep its source active)."""
        assert self.watermarks_to is not None
        mono = time.monotonic()
        for partition in batches:
            mark = self.clock.watermark(partition)
            if mark is None:
                continue
            last = self._marks.get(partition)
            if (
                last is not None
                and last[0] == mark
                and mono - last[1] < self.clock.idle_seconds / 2
            ):
                continue
            self._marks[partition] = (mark, mono)
            command = {
                "type": "watermark",
                "origin": {"ts": mark, "source": ["watermark", self.topic, partition]},
            }
            for p in range(self.partitions):
                envelopes.add_to(self.watermarks_to, p, None, command)

    def _flush_unreadable(self, batches: dict[int, KeyedBatch[S]], envelopes: Envelopes) -> None:
        """Rows that could not be read: each to the DLQ (its bytes as stored) and deleted, so
        one bad row never stops the agent nor comes back at every rebuild."""
        pending, self._unreadable = self._unreadable, []
        seen: set[tuple[int, str]] = set()
        for partition, key, raw, reason in pending:
            if (partition, key) in seen:
                continue  # found by the rebuild, then read again by a command
            seen.add((partition, key))
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = KeyedBatch(self, partition, envelopes)
            log.error(
                "%s: unreadable row %r of partition %d: %s",
                self.logic.stage,
                key,
                partition,
                reason,
            )
            batch.sends.append(
                dead_letter_message(
                    key=self.store.raw_key(key),
                    value=raw,
                    source_topic=self.store.changelog_topic,
                    source_partition=partition,
                    source_offset=None,
                    stage=self.logic.stage,
                    error=InvalidEvent("unreadable_state", reason),
                )
            )
            batch.unreadable.add(key)
            batch.original[key] = None
            batch.changed.setdefault(key, None)

    def _refuse(
        self,
        batch: KeyedBatch[S],
        event: EventT[Any],
        key: Any,
        command: dict[str, Any],
        exc: Exception,
    ) -> None:
        # never let one command stop the agent: it goes to the DLQ with its origin
        if not isinstance(exc, InvalidEvent):
            log.exception("%s failed on %r", self.logic.stage, key)
        batch.sends.append(
            self.logic.dead_letter(key, command, event.message.partition, event.message.offset, exc)
        )

    async def _write(self, batches: list[KeyedBatch[S]]) -> None:
        """Every changed key of the batch: changelog first, acknowledged, then RocksDB."""
        writes: dict[int, list[Write]] = {}
        encoded: dict[str, dict[str, Any] | None] = {}
        for batch in batches:
            out = writes[batch.partition] = []
            for key, state in batch.changed.items():
                if state is None:
                    stored = key in batch.unreadable
                    if not stored and key in batch.original and batch.original[key] is None:
                        continue  # created and deleted within the batch: nothing stored
                    out.append((key, None))
                    encoded[key] = None
                else:
                    raw = self.logic.encode(state)
                    out.append((key, orjson.dumps(raw)))
                    encoded[key] = raw
        records = [r for p, ws in writes.items() for r in self.store.changelog(p, ws)]
        if not records:
            return
        written = await send_until_done(self.send, records, self.logic.stage) or {}
        topic = self.store.changelog_topic
        offsets = {p: offset for (t, p), offset in written.items() if t == topic}
        for batch in batches:
            ws = writes[batch.partition]
            if not ws:
                continue
            self.store.apply(batch.partition, ws, offsets.get(batch.partition))
            for key, _ in ws:
                self._indexed(batch, key, encoded[key])

    def _indexed(self, batch: KeyedBatch[S], key: str, raw: dict[str, Any] | None) -> None:
        """What a written key changes in the cache, the counts and the due index."""
        state = batch.changed[key]
        known = key in batch.original
        before = batch.original.get(key)
        if known:
            self.states += int(raw is not None) - int(before is not None or key in batch.unreadable)
        if raw is None or state is None:
            self._cache.pop(key, None)
        else:
            self._remember(key, state)
            due = self.logic.due_of(raw)
            # a due time that did not change is scheduled already
            if not known or before is None or self.logic.due(before) != due:
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


def _event_time(command: dict[str, Any]) -> tuple[float | None, Any]:
    """The event time of a command (its input record's timestamp, which the router puts in
    its origin) and the source whose stream time it moves (None: it moves none).

    The router's commands move their input partition's; a watermark moves its sender's; a
    forwarded command (`via` another stage) moves none, its sender's watermarks do."""
    origin = command.get("origin")
    if not isinstance(origin, dict):
        return None, None
    ts = origin.get("ts")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not 0 < ts < math.inf:
        return None, None
    if command.get("type") == "watermark":
        source = origin.get("source")
        return float(ts), tuple(source) if isinstance(source, list) else ("watermark",)
    if origin.get("via") is not None:
        return float(ts), None
    return float(ts), (origin.get("topic"), origin.get("partition"))


def _reason(exc: BaseException) -> str:
    return f"stored state cannot be read: {type(exc).__name__}: {exc}"[:1000]
