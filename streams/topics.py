"""Topics: the fixed external names of the contract and the internal topics (APP_ID-prefixed).

External topics are read and written as raw bytes: events are decoded by our own validation so
that a value that does not decode reaches the DLQ instead of being acked and dropped by Faust.
Internal topics carry JSON with `str(id)` keys serialized as JSON, exactly like the keys of the
tables they feed, so each table and its stream are co-partitioned whatever partitioner an
external producer used.
"""

from __future__ import annotations

from faust.types import TopicT

from streams.app import app
from streams.settings import settings

ALBUMS_PARSED = f"{settings.topic_prefix}albums.parsed"
VISION_ANALYZED = f"{settings.topic_prefix}posts.vision.analyzed"
ALBUM_ASSEMBLED = f"{settings.topic_prefix}album.assembled"
ALBUMS_DLQ = f"{settings.topic_prefix}albums.dlq"

EXTERNAL_TOPICS = (ALBUMS_PARSED, VISION_ANALYZED, ALBUM_ASSEMBLED, ALBUMS_DLQ)


def _external(*names: str) -> TopicT:
    # `internal=True` only makes Faust create the topic (TOPIC_PARTITIONS partitions) when it is
    # missing: a consumer subscribed to a topic that does not exist yet would not see it until
    # its next metadata refresh (minutes). The name stays as the contract says.
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
        internal=True,
    )


albums_parsed_topic = _external(ALBUMS_PARSED)
vision_analyzed_topic = _external(VISION_ANALYZED)
album_assembled_topic = _external(ALBUM_ASSEMBLED)
dlq_topic = _external(ALBUMS_DLQ)


async def declare_output_topics() -> None:
    """Create the contract's topics at start-up so consumers can subscribe before any event."""
    for topic in (albums_parsed_topic, vision_analyzed_topic, album_assembled_topic, dlq_topic):
        await topic.maybe_declare()


app.task(declare_output_topics)


# Under exactly_once the assembler emits here and agents.relay publishes to album.assembled.
OUTBOX = f"{settings.app_id}-assembled-outbox"
RELAY_STATE = f"{settings.app_id}-relay-state"
outbox_topic = app.topic(
    OUTBOX,
    key_serializer="json",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)

# Album commands keyed by str(album_id): parsed albums, vision routed to its album, ticks.
album_events_topic = app.topic(
    f"{settings.app_id}-album-events",
    key_serializer="json",
    value_serializer="json",
    partitions=settings.topic_partitions,
    internal=True,
)

# Post commands keyed by str(post_id): index entries, vision awaiting its album, ticks.
post_events_topic = app.topic(
    f"{settings.app_id}-post-events",
    key_serializer="json",
    value_serializer="json",
    partitions=settings.topic_partitions,
    internal=True,
)


def sink_retry_topic_name(sink: str) -> str:
    """Where `dlq-replay` sends an album a sink parked: only that sink reads it again."""
    return f"{settings.app_id}-sink-{sink}-retry"


def sink_channel(sink: str) -> TopicT:
    """What a sink agent reads, as raw bytes: album.assembled and its own retry topic."""
    return _external(ALBUM_ASSEMBLED, sink_retry_topic_name(sink))
