"""Topic names: the fixed external names of the contract and the internal topics.

Names only (no Faust import), so the stage processes, tools and tests can use them without the
app. External topics carry the contract's JSON with `str(id)` keys; internal topics
(APP_ID-prefixed) carry envelopes of commands (agents/envelopes.py) addressed to the partition
Faust gives each JSON-encoded key, so every table and its stream are co-partitioned whatever
partitioner an external producer used. The Faust topic objects of the table agents are declared
with the tables (tables/declarations.py).
"""

from __future__ import annotations

from streams.settings import settings

ALBUMS_PARSED = f"{settings.topic_prefix}albums.parsed"
VISION_ANALYZED = f"{settings.topic_prefix}posts.vision.analyzed"
ALBUM_ASSEMBLED = f"{settings.topic_prefix}album.assembled"
ALBUMS_DLQ = f"{settings.topic_prefix}albums.dlq"

EXTERNAL_TOPICS = (ALBUMS_PARSED, VISION_ANALYZED, ALBUM_ASSEMBLED, ALBUMS_DLQ)

#: album commands keyed by str(album_id): parsed albums, vision routed to its album, ticks
ALBUM_EVENTS = f"{settings.app_id}-album-events"
#: post commands keyed by str(post_id): index entries, vision awaiting its album, ticks
POST_EVENTS = f"{settings.app_id}-post-events"

#: under exactly_once the assembler emits here and agents.relay publishes to album.assembled
OUTBOX = f"{settings.app_id}-assembled-outbox"
#: the relay's published versions (compacted)
RELAY_STATE = f"{settings.app_id}-relay-state"


def sink_retry_topic_name(sink: str) -> str:
    """Where `dlq-replay` sends an album a sink parked: only that sink reads it again."""
    return f"{settings.app_id}-sink-{sink}-retry"


# Consumer groups: one per stage, so each commits on its own (the table agents use Faust's
# group, APP_ID itself).
ROUTER_GROUP = f"{settings.app_id}-router"
RELAY_GROUP = f"{settings.app_id}-relay"
WATCH_GROUP = f"{settings.app_id}-watch"


def sink_group(sink: str) -> str:
    return f"{settings.app_id}-sink-{sink}"
