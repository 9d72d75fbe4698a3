"""Per-album debouncing and the safe channel cursor (pure: the clock is passed in)."""

from __future__ import annotations

from dataclasses import dataclass, field

AlbumKey = tuple[int, int]
"""(channel_id, grouped_id)"""


@dataclass(slots=True)
class Pending:
    """An album waiting for quiet: the message ids its updates named, and when it is due."""

    due_at: float
    ids: set[int]


@dataclass(slots=True)
class Debouncer:
    """Waits `seconds` of quiet per (channel, grouped_id) before an album is fetched.

    Each update of a part pushes its album's due time back, so parts that arrive 0.7 s apart
    make one fetch; a part arriving after the album was flushed starts a new round (and the
    album is stored again if it changed).
    """

    seconds: float
    _pending: dict[AlbumKey, Pending] = field(default_factory=dict)

    def touch(self, key: AlbumKey, message_ids: set[int], now: float) -> None:
        p = self._pending.get(key)
        if p is None:
            self._pending[key] = Pending(now + self.seconds, set(message_ids))
        else:
            p.due_at = now + self.seconds
            p.ids |= message_ids

    def pop_due(self, now: float) -> list[tuple[AlbumKey, set[int]]]:
        """Albums quiet for long enough, earliest first."""
        due = sorted((p.due_at, k) for k, p in self._pending.items() if p.due_at <= now)
        return [(k, self._pending.pop(k).ids) for _, k in due]

    def pop_all(self) -> list[tuple[AlbumKey, set[int]]]:
        keys = sorted(self._pending, key=lambda k: self._pending[k].due_at)
        return [(k, self._pending.pop(k).ids) for k in keys]

    def next_due(self) -> float | None:
        return min((p.due_at for p in self._pending.values()), default=None)

    def pending_ids(self, channel_id: int) -> set[int]:
        out: set[int] = set()
        for (ch, _), p in self._pending.items():
            if ch == channel_id:
                out |= p.ids
        return out

    def __len__(self) -> int:
        return len(self._pending)


def safe_cursor(stored_up_to: int, pending_ids: set[int]) -> int:
    """The cursor a channel may record: the highest stored id below every pending album part."""
    if not pending_ids:
        return stored_up_to
    return min(stored_up_to, min(pending_ids) - 1)
