"""Internal commands travel in envelopes: one Kafka message per internal partition and batch.

The router turns a batch of external records into commands for `album-events` (keyed by
album_id) and `post-events` (keyed by post_id); the post index forwards vision to
`album-events`. Sent one message per command, each cost a Faust event on the table agents
(fetcher, conductor, stream, ack: a third of the worker's time). Instead every command of a
batch bound for one partition goes in one message:

    {"type": "batch", "commands": [["42", {...command...}], ...]}

The partition is the one Kafka's default partitioner (murmur2) gives the JSON-encoded key, the
same one Faust gives that key for the table and its web views (`/table/album_state/{id}/`), so
co-partitioning holds: the agent that owns a key's partition finds every command for it in
envelopes of that partition. An envelope holds at most `max_commands` commands and
`max_bytes` bytes (a single larger command travels alone).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from agents.direct import Message

#: an envelope's byte budget, well under Kafka's default 1 MB record limit
MAX_BYTES = 256 * 1024
MAX_COMMANDS = 1000

_HEAD = b'{"type":"batch","commands":['
_TAIL = b"]}"


@functools.lru_cache(maxsize=1 << 17)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (and so Faust) gives a JSON-encoded str key.

    Cached: aiokafka's murmur2 is pure Python, and the router meets most keys several times
    (an album's id with its album and each of its vision events)."""
    return int(murmur2(orjson.dumps(key)) & 0x7FFFFFFF) % partitions


class Envelopes:
    """Collects commands by (topic, partition); `messages()` packs them into envelopes.

    Args:
        partitions: the partition count of every internal topic (TOPIC_PARTITIONS).
    """

    def __init__(
        self, partitions: int, *, max_bytes: int = MAX_BYTES, max_commands: int = MAX_COMMANDS
    ) -> None:
        self.partitions = partitions
        self.max_bytes = max_bytes
        self.max_commands = max_commands
        self._parts: dict[tuple[str, int], list[bytes]] = {}
        self.commands = 0

    def add(self, topic: str, key: str, command: dict[str, Any]) -> None:
        self.add_to(topic, partition_for(key, self.partitions), key, command)

    def add_to(self, topic: str, partition: int, key: str | None, command: dict[str, Any]) -> None:
        """A command for a given partition (one that is not about a key, such as a watermark)."""
        dest = (topic, partition)
        parts = self._parts.get(dest)
        if parts is None:
            parts = self._parts[dest] = []
        parts.append(orjson.dumps([key, command]))
        self.commands += 1

    def messages(self) -> list[Message]:
        out: list[Message] = []
        for (topic, partition), parts in self._parts.items():
            for chunk in _chunks(
                parts, self.max_bytes - len(_HEAD) - len(_TAIL), self.max_commands
            ):
                out.append((topic, None, _HEAD + b",".join(chunk) + _TAIL, partition))
        return out


def _chunks(parts: list[bytes], max_bytes: int, max_count: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for part in parts:
        if chunk and (size + len(part) + 1 > max_bytes or len(chunk) >= max_count):
            yield chunk
            chunk, size = [], 0
        chunk.append(part)
        size += len(part) + 1
    if chunk:
        yield chunk


def commands_of(key: Any, value: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The (key, command) pairs of an internal message: an envelope's, or the message itself."""
    if isinstance(value, dict) and value.get("type") == "batch":
        for entry in value.get("commands") or ():
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
                yield entry[0], entry[1]
            else:
                yield None, {"type": "malformed", "entry": entry}
        return
    yield key, value if isinstance(value, dict) else {"type": "malformed", "entry": value}
