"""Replaying `albums.dlq`: dead letters back to their source topic, filtered, resumable."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.dlq import DlqRecord
from schemas.validation import InvalidEvent
from streams.kafka_io import topic_partitions
from streams.kafka_security import kafka_options
from streams.settings import SINK_NAMES


async def replay_dlq(
    bootstrap_servers: list[str],
    *,
    group_id: str,
    stage: str | None = None,
    error_type: str | None = None,
    source_topic: str | None = None,
    limit: int = 0,
    dry_run: bool = False,
    from_beginning: bool = False,
    topic_prefix: str = "",
    app_id: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Replay matching DLQ records to their source topics; returns counts.

    Only records whose source is one of the contract's topics (under `topic_prefix`) are
    replayed: a record from an internal stage names the external topic its event came from.
    With `app_id`, albums a sink parked (stage `sink.<name>`) are replayed too: to that sink's
    retry topic `{app_id}-sink-<name>-retry`, which only that sink reads.
    """
    dlq_topic = topic_prefix + "albums.dlq"
    replayable = {
        topic_prefix + t for t in ("albums.parsed", "posts.vision.analyzed", "album.assembled")
    }
    if app_id:
        replayable |= {f"{app_id}-sink-{name}-retry" for name in SINK_NAMES}
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=bootstrap_servers,
        group_id=None if dry_run else group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        **kafka_options(), bootstrap_servers=bootstrap_servers, enable_idempotence=True
    )
    await consumer.start()
    await producer.start()
    counts = {"replayed": 0, "skipped": 0, "bad": 0}
    try:
        tps = await topic_partitions(consumer, dlq_topic)
        if not tps:
            return counts
        consumer.assign(tps)
        if from_beginning or dry_run:
            await consumer.seek_to_beginning(*tps)
        else:
            committed = {tp: await consumer.committed(tp) for tp in tps}
            for tp, off in committed.items():
                if off is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, off)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        done = False
        while remaining and not done:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, msgs in batch.items():
                for m in msgs:
                    try:
                        rec = DlqRecord.decode(m.value)
                    except InvalidEvent:
                        counts["bad"] += 1
                        continue
                    if (
                        (stage and rec.stage != stage)
                        or (error_type and rec.error_type != error_type)
                        or (source_topic and rec.source_topic != source_topic)
                        or rec.source_topic not in replayable
                        or rec.truncated  # only part of the original is kept
                    ):
                        counts["skipped"] += 1
                        continue
                    if echo:
                        echo(
                            f"{'would replay' if dry_run else 'replay'} {rec.source_topic} "
                            f"key={rec.key!r} stage={rec.stage} {rec.error_type}: "
                            f"{rec.error_message[:120]}"
                        )
                    if not dry_run:
                        await producer.send_and_wait(rec.source_topic, key=rec.key, value=rec.value)
                    counts["replayed"] += 1
                    if limit and counts["replayed"] >= limit:
                        done = True
                        if not dry_run:
                            await consumer.commit({tp: m.offset + 1})
                        break
                if done:
                    break
                if not dry_run and msgs:
                    await consumer.commit({tp: msgs[-1].offset + 1})
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await producer.stop()
        await consumer.stop()
    return counts
