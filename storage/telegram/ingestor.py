"""The ingestion pipeline: updates and backfills → albums in Postgres and S3 → the outbox.

Albums are built from the server's answer, never from the order updates arrive in: an update of
a part only names its (channel, grouped_id); after INGEST_ALBUM_DEBOUNCE_SECONDS of quiet the
album's id neighbourhood is fetched in one request and the parts with that grouped_id are the
album. A backfill reads history in ascending id order and groups it with the same code.

Every album is then de-duplicated against what Postgres holds (the persistent album_seen):
- same source fingerprint: nothing is downloaded, written or emitted;
- changed: media not stored yet are downloaded, the rows are rewritten and an albums.parsed
  event with the full item list goes to the outbox, in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from telethon.tl import types

from schemas.dlq import dead_letter
from schemas.validation import InvalidEvent
from storage.postgres.ingest import DELETED, UNCHANGED, AlbumOwned, IngestStore
from storage.s3 import media_key
from storage.telegram.albums import (
    AlbumError,
    Grouper,
    StoredMedia,
    album_id_for,
    album_parts,
    arrival_time,
    build_album,
    fetch_window,
    media_info,
    post_row,
    source_fingerprint,
)
from storage.telegram.debounce import Debouncer, safe_cursor
from storage.telegram.media import MediaStore
from storage.telegram.metrics import IngestMetrics
from storage.telegram.outbox import DeadLetters
from storage.telegram.recording import (
    BadLine,
    DeletionLine,
    MessageLine,
    RecordingSource,
    parse_line,
    read_lines,
)
from storage.telegram.source import TelegramSource

log = logging.getLogger(__name__)

STAGE = "ingest"
# a dead letter keeps at most this much of the original bytes (a line can carry large media)
MAX_DLQ_VALUE = 512 * 1024
POSTS_BATCH = 200
REFUSED = "refused"
# albums stored at once (their fetches stay in arrival order; see Ingestor._schedule)
STORE_CONCURRENCY = 8


@dataclass(slots=True)
class Progress:
    """Counters a progress bar or a log line shows."""

    messages: int = 0
    albums: int = 0
    media_bytes: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0


async def _no_guard(channel_id: int) -> None:
    return None


class Ingestor:
    """Turns one account's Telegram messages into stored albums and outbox events.

    Args:
        source: where messages come from (the Telethon client, or a recording).
        store: ingestion's Postgres.
        media: the media downloader and S3 store.
        dead_letters: where unparsable messages and refused albums go (albums.dlq).
        tenant_id: INGEST_TENANT_ID.
        parsed_topic: albums.parsed (with TOPIC_PREFIX).
        debounce_seconds: INGEST_ALBUM_DEBOUNCE_SECONDS.
        on_committed: called after a transaction that wrote an outbox row (wakes the publisher).
    """

    def __init__(
        self,
        source: TelegramSource,
        store: IngestStore,
        media: MediaStore,
        dead_letters: DeadLetters,
        metrics: IngestMetrics,
        *,
        tenant_id: str,
        parsed_topic: str,
        debounce_seconds: float,
        on_committed: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.store = store
        self.media = media
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.tenant_id = tenant_id
        self.parsed_topic = parsed_topic
        self.debouncer = Debouncer(debounce_seconds)
        self.on_committed = on_committed
        self.now = now
        self.progress = Progress()
        self._stored_up_to: dict[int, int] = {}
        self._last_seen: dict[int, int] = {}
        # called with each channel id before its first write (the CLI takes the channel's
        # advisory lock there)
        self.channel_guard: Callable[[int], Awaitable[None]] = _no_guard
        self._last_clock = 0.0
        # set while a recording is replayed (see _stale)
        self.replaying = False
        self._slots = asyncio.Semaphore(STORE_CONCURRENCY)
        self._inflight: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._inflight_ids: dict[tuple[int, int], set[int]] = {}
        self._errors: list[BaseException] = []

    # -- albums ------------------------------------------------------------------------------

    async def flush_album(self, channel_id: int, grouped_id: int, ids: set[int]) -> str | None:
        """Fetch an album's neighbourhood (one request) and store what the server returned."""
        parts = await self._fetch_parts(channel_id, grouped_id, ids)
        if parts is None:
            return None
        outcome = await self.store_album(channel_id, grouped_id, parts)
        self._mark_stored(channel_id, [m.id for m in parts] or sorted(ids))
        return outcome

    async def _fetch_parts(
        self, channel_id: int, grouped_id: int, ids: set[int]
    ) -> list[types.Message] | None:
        known = await self.store.stored_parts(channel_id, grouped_id)
        messages = await self.source.fetch_window(channel_id, fetch_window(ids | set(known)))
        try:
            return album_parts(messages, grouped_id)
        except AlbumError as exc:
            await self._dead_letter(channel_id, None, "album_too_large", str(exc))
            return None

    async def store_album(
        self,
        channel_id: int,
        grouped_id: int,
        parts: Sequence[types.Message],
        *,
        cursor: int | None = None,
    ) -> str:
        """De-duplicate, download what is new, and store one album (see the module docstring)."""
        album_id = album_id_for(channel_id, grouped_id)
        fingerprint = source_fingerprint(parts)
        known = await self.store.known_album(album_id)
        if not parts:
            deleted = known is not None and await self.store.delete_album(album_id, fingerprint)
            return self._count(DELETED if deleted else UNCHANGED)
        if known is not None and known.source_fingerprint == fingerprint and not known.deleted:
            if cursor is not None:
                await self.store.save_cursor(channel_id, cursor)
            return self._count(UNCHANGED)
        if (
            self.replaying
            and known is not None
            and await self._stale(channel_id, grouped_id, parts)
        ):
            return self._count(UNCHANGED)
        media = await self._media_of(channel_id, parts)
        album = build_album(
            tenant_id=self.tenant_id,
            channel_id=channel_id,
            grouped_id=grouped_id,
            parts=parts,
            media=media,
            parsed_at=self.now(),
        )
        objects = {s.sha256: (s, media_key(s.sha256)) for s in media.values() if s.sha256}
        try:
            outcome = await self.store.save_album(
                album,
                posts=[post_row(channel_id, m, media.get(m.id)) for m in parts],
                media=list(objects.values()),
                source_fingerprint=fingerprint,
                cursor=cursor,
                topic=self.parsed_topic,
            )
        except AlbumOwned as exc:
            await self._dead_letter(
                channel_id, orjson.dumps(album.to_dict()), "album_owned_elsewhere", str(exc)
            )
            return self._count(REFUSED)
        if outcome != UNCHANGED:
            self.on_committed()
        return self._count(outcome)

    async def _stale(
        self, channel_id: int, grouped_id: int, parts: Sequence[types.Message]
    ) -> bool:
        """Whether a replay's view of an album is older than what is stored.

        A replay that runs again (a second replay, or a restart after a crash) passes through
        the album's earlier states: its parts before a late part arrived, before an edit, before
        a deletion. Telegram never goes back, so neither do we: a view with a part older than
        its stored edit, a part stored as deleted, or without a stored part (not arrived yet in
        the recording) is skipped.
        """
        stored = await self.store.stored_parts(channel_id, grouped_id)
        seen = {m.id for m in parts}
        for m in parts:
            if m.id not in stored:
                continue
            edit_date, deleted = stored[m.id]
            if deleted:
                return True
            if edit_date is not None and (m.edit_date is None or m.edit_date < edit_date):
                return True
        return any(not deleted and mid not in seen for mid, (_, deleted) in stored.items())

    async def _media_of(
        self, channel_id: int, parts: Sequence[types.Message]
    ) -> dict[int, StoredMedia]:
        known = await self.store.known_media(channel_id, [m.id for m in parts])
        out: dict[int, StoredMedia] = {}
        todo: list[tuple[types.Message, Awaitable[StoredMedia]]] = []
        for m in parts:
            info = media_info(m)
            if info is None:
                continue
            seen = known.get(m.id)
            if seen is not None and seen[0] == info.media_id and seen[1].skipped is None:
                out[m.id] = seen[1]  # same Telegram file as stored before: no download
                continue
            todo.append((m, self.media.store(self.source, channel_id, m, info)))
        results = await asyncio.gather(*(aw for _, aw in todo))
        for (m, _), stored in zip(todo, results, strict=True):
            out[m.id] = stored
            if stored.skipped:
                self.metrics.media_skipped.labels(stored.skipped).inc()
        return out

    def _count(self, outcome: str) -> str:
        self.metrics.albums.labels(outcome).inc()
        self.progress.albums += 1
        self.progress.outcomes[outcome] = self.progress.outcomes.get(outcome, 0) + 1
        return outcome

    # -- live updates (and replays of them) --------------------------------------------------

    async def on_message(self, channel_id: int, message: types.Message, now: float) -> None:
        """A new or edited message: single posts are stored at once, album parts debounced."""
        await self.channel_guard(channel_id)
        self.progress.messages += 1
        self._last_seen[channel_id] = max(self._last_seen.get(channel_id, 0), message.id)
        if message.edit_date is not None:
            self.metrics.messages.labels("edit").inc()
        if message.grouped_id is None:
            self.metrics.messages.labels("single").inc()
            self._mark_stored(channel_id, [message.id])
            await self.store.save_posts(
                channel_id, [post_row(channel_id, message)], self._cursor(channel_id)
            )
            self._update_cursor_metrics(channel_id)
            return
        self.metrics.messages.labels("album_part").inc()
        self.debouncer.touch((channel_id, message.grouped_id), {message.id}, now)

    async def on_deleted(self, channel_id: int, message_ids: Sequence[int], now: float) -> None:
        """Deleted messages: mark them, and fetch the albums they were part of again."""
        await self.channel_guard(channel_id)
        # an album fetched before the deletion is stored before the deletion is marked
        await self.drain(channel_id)
        self.metrics.messages.labels("deletion").inc(len(message_ids))
        for grouped_id in await self.store.mark_deleted(channel_id, message_ids):
            self.debouncer.touch((channel_id, grouped_id), set(message_ids), now)

    async def flush_due(self, now: float) -> int:
        """Store every album whose debounce has passed (and wait for it); returns how many."""
        n = await self._schedule_due(now)
        await self.drain()
        return n

    async def flush_all(self) -> int:
        """Store every album still waiting for quiet, and wait for it."""
        self._last_clock = max(self._last_clock, 0.0)
        due = self.debouncer.pop_all()
        await self._schedule(due)
        await self.drain()
        return len(due)

    async def _schedule_due(self, now: float) -> int:
        self._last_clock = now
        due = self.debouncer.pop_due(now)
        await self._schedule(due)
        return len(due)

    async def _schedule(self, due: list[tuple[tuple[int, int], set[int]]]) -> None:
        """Fetch each due album now, in order, and store it in the background.

        The fetch is what the album is built from, so it happens in arrival order; storing
        (downloads, S3, the transaction) overlaps for up to STORE_CONCURRENCY albums. One
        album's stores run one after the other, in the order they were fetched.
        """
        for n, (key, ids) in enumerate(due):
            channel_id, grouped_id = key
            try:
                parts = await self._fetch_parts(channel_id, grouped_id, ids)
            except BaseException:
                # this album and the ones not reached yet are due again after a debounce
                for k, rest in due[n:]:
                    self.debouncer.touch(k, rest, self._last_clock)
                raise
            if parts is None:
                continue
            await self._slots.acquire()
            previous = self._inflight.get(key)
            held = ids | {m.id for m in parts}
            task = asyncio.create_task(self._store_in_order(previous, key, parts, held))
            self._inflight[key] = task
            self._inflight_ids[key] = held

    async def _store_in_order(
        self,
        previous: asyncio.Task[None] | None,
        key: tuple[int, int],
        parts: list[types.Message],
        ids: set[int],
    ) -> None:
        channel_id, grouped_id = key
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await self.store_album(channel_id, grouped_id, parts)
            except Exception as exc:
                log.warning("album %s not stored (due again later): %s", key, exc)
                self.debouncer.touch(key, ids, self._last_clock)
                self._errors.append(exc)
                return
            self._mark_stored(channel_id, sorted(ids))
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
                self._inflight_ids.pop(key, None)
            await self.store.save_cursor(channel_id, self._cursor(channel_id))
            self._update_cursor_metrics(channel_id)
        finally:
            self._slots.release()

    async def drain(self, channel_id: int | None = None) -> None:
        """Wait for the albums being stored (of one channel, or all); raises the first error."""
        tasks = [t for k, t in self._inflight.items() if channel_id is None or k[0] == channel_id]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if channel_id is None and self._errors:
            errors, self._errors = self._errors, []
            raise errors[0]

    def _mark_stored(self, channel_id: int, ids: Sequence[int]) -> None:
        if ids:
            self._stored_up_to[channel_id] = max(self._stored_up_to.get(channel_id, 0), *ids)

    def _cursor(self, channel_id: int) -> int:
        held = self.debouncer.pending_ids(channel_id)
        for (ch, _), ids in self._inflight_ids.items():
            if ch == channel_id:
                held |= ids
        return safe_cursor(self._stored_up_to.get(channel_id, 0), held)

    def _update_cursor_metrics(self, channel_id: int) -> None:
        label = str(channel_id)
        cursor = self._cursor(channel_id)
        self.metrics.cursor.labels(label).set(cursor)
        self.metrics.lag.labels(label).set(max(0, self._last_seen.get(channel_id, 0) - cursor))

    # -- backfill ----------------------------------------------------------------------------

    async def backfill(
        self,
        channel_id: int,
        *,
        min_id: int | None = None,
        since: datetime | None = None,
        on_step: Callable[[], None] = lambda: None,
    ) -> int:
        """Store every message after the channel's cursor (or `min_id`); returns messages read.

        Resumable: the cursor moves in the transactions that store, so a restart goes on
        where the last one stopped, and what is read twice changes nothing.
        """
        await self.channel_guard(channel_id)
        start = await self.store.cursor(channel_id) if min_id is None else min_id
        grouper = Grouper()
        singles: list[types.Message] = []
        read = 0
        last = start

        async def save_singles(cursor: int) -> None:
            if singles:
                rows = [post_row(channel_id, m) for m in singles]
                await self.store.save_posts(channel_id, rows, cursor)
                singles.clear()

        async for message in self.source.iter_since(channel_id, start):
            read += 1
            self.progress.messages += 1
            last = max(last, message.id)
            self._last_seen[channel_id] = max(self._last_seen.get(channel_id, 0), message.id)
            kind = "single" if message.grouped_id is None else "album_part"
            self.metrics.messages.labels(kind).inc()
            if since is not None and message.date is not None and message.date < since:
                continue
            for grouped_id, parts in grouper.add(message):
                if grouped_id is None:
                    singles.extend(parts)
                    continue
                cursor = min(grouper.safe_cursor(), message.id - 1)
                await save_singles(cursor)
                await self._store_closed(channel_id, grouped_id, parts, cursor)
            if len(singles) >= POSTS_BATCH:
                await save_singles(min(grouper.safe_cursor(), message.id))
            on_step()
        for grouped_id, parts in grouper.finish():
            assert grouped_id is not None
            await save_singles(min(grouper.safe_cursor(), last))
            await self._store_closed(channel_id, grouped_id, parts, grouper.safe_cursor())
        await save_singles(last)
        await self.store.save_cursor(channel_id, last)
        self._stored_up_to[channel_id] = max(self._stored_up_to.get(channel_id, 0), last)
        self._update_cursor_metrics(channel_id)
        on_step()
        return read

    async def _store_closed(
        self, channel_id: int, grouped_id: int, parts: list[types.Message], cursor: int
    ) -> None:
        await self.store_album(channel_id, grouped_id, parts, cursor=cursor)

    # -- replay ------------------------------------------------------------------------------

    async def replay(self, path: Path, *, on_step: Callable[[], None] = lambda: None) -> int:
        """Run a recording through the pipeline; returns the lines read.

        The lines are updates in arrival order; the replay's clock is the arrival time the
        messages carry (date, or edit_date for an edit), so debouncing behaves as it did live:
        parts that came within INGEST_ALBUM_DEBOUNCE_SECONDS make one album, a part, an edit or a
        deletion that came later changes it. The recording answers the neighbourhood fetches
        with what its lines up to that point said.
        """
        if not isinstance(self.source, RecordingSource):
            raise TypeError("replay needs a RecordingSource as the ingestor's source")
        source = self.source
        self.replaying = True
        clock = float("-inf")
        lines = 0
        for line_no, raw in read_lines(path):
            lines += 1
            try:
                line = parse_line(raw, line_no)
            except BadLine as exc:
                self.metrics.messages.labels("invalid").inc()
                await self._dead_letter(None, exc.raw, exc.error_type, str(exc))
                on_step()
                continue
            if isinstance(line, MessageLine):
                at = arrival_time(line.message)
                if at is not None:
                    clock = max(clock, at.timestamp())
            # albums quiet since before this update are fetched with the server's state
            # before it, as they were live (and stored in the background)
            await self._schedule_due(clock)
            if not source.apply(line):
                self.metrics.messages.labels("duplicate").inc()
                self.progress.messages += 1
                on_step()
                continue
            if isinstance(line, DeletionLine):
                await self.on_deleted(line.channel_id, line.deleted_ids, clock)
            else:
                await self.on_message(line.channel_id, line.message, clock)
            on_step()
        await self.flush_all()
        on_step()
        return lines

    # -- dead letters ------------------------------------------------------------------------

    async def _dead_letter(
        self, channel_id: int | None, raw: bytes | None, error_type: str, message: str
    ) -> None:
        value = raw
        if value is not None and len(value) > MAX_DLQ_VALUE:
            message += f" (value cut to {MAX_DLQ_VALUE} of {len(value)} bytes)"
            value = value[:MAX_DLQ_VALUE]
        log.warning("dead letter (%s): %s", error_type, message)
        self.progress.dead_letters += 1
        await self.dead_letters.send(
            dead_letter(
                key=None if channel_id is None else str(channel_id).encode(),
                value=value,
                source_topic="telegram",
                source_partition=None,
                source_offset=None,
                stage=STAGE,
                error=InvalidEvent(error_type, message),
            )
        )
