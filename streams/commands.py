"""CLI commands on the app: `python -m streams generate|dlq-replay|topics|describe|tail|ingest|
stages`."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from faust.cli import option
from faust.cli.faust import cli

from schemas.dlq import DlqRecord
from schemas.validation import InvalidEvent
from storage.postgres import upgrade_async
from streams.app import app
from streams.dlq_replay import replay_dlq
from streams.ingest import ingest
from streams.kafka_io import produce, topic_partitions
from streams.kafka_security import kafka_options
from streams.settings import redact_url, settings
from streams.stages import stages
from streams.topics import ALBUMS_DLQ
from streams.webauth import web_token

# Generator, load-test and showcase code is imported inside the commands that use it: the
# worker imports this module (Faust's autodiscovery) and keeps them out of its process.

# `python -m streams ingest ...`: a plain click group (ingestion does not run the Faust app)
cli.add_command(ingest)
# `python -m streams stages router|sinks`: stage loops outside the worker (streams/stages.py)
cli.add_command(stages)


def _write_json(path: str, doc: Any) -> None:
    Path(path).write_bytes(orjson.dumps(doc))


def _read_json(path: str) -> Any:
    return orjson.loads(Path(path).read_bytes())


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@app.command(
    option("--albums", type=int, default=100, show_default=True, help="albums to generate"),
    option("--seed", type=int, default=0, show_default=True),
    option("--tenants", default="acme", show_default=True, help="comma-separated tenant ids"),
    option("--first-album-id", type=int, default=1, show_default=True),
    option("--shuffle/--no-shuffle", default=True, show_default=True),
    option("--duplicate-share", type=float, default=0.0, show_default=True),
    option("--missing-vision-share", type=float, default=0.0, show_default=True),
    option("--vision-first-share", type=float, default=0.0, show_default=True),
    option("--album-id-share", type=float, default=0.5, show_default=True),
    option("--malformed-share", type=float, default=0.0, show_default=True),
    option("--not-in-album", type=int, default=0, show_default=True),
    option("--rate", type=float, default=0.0, help="records/s (0: as fast as possible)"),
    option(
        "--expect-out",
        default=None,
        help="write the album ids expected complete (and those missing vision) as JSON here",
    ),
)
async def generate_albums(
    self: Any,
    albums: int,
    seed: int,
    tenants: str,
    first_album_id: int,
    shuffle: bool,
    duplicate_share: float,
    missing_vision_share: float,
    vision_first_share: float,
    album_id_share: float,
    malformed_share: float,
    not_in_album: int,
    rate: float,
    expect_out: str | None,
) -> None:
    """Produce synthetic albums and vision events to albums.parsed / posts.vision.analyzed."""
    from streams.generator import GeneratorConfig, generate

    cfg = GeneratorConfig(
        albums=albums,
        seed=seed,
        tenants=tuple(t.strip() for t in tenants.split(",") if t.strip()),
        first_album_id=first_album_id,
        shuffle=shuffle,
        duplicate_share=duplicate_share,
        missing_vision_share=missing_vision_share,
        vision_first_share=vision_first_share,
        album_id_share=album_id_share,
        malformed_share=malformed_share,
        not_in_album=not_in_album,
    )
    batch = generate(cfg)
    sent = await produce(
        settings.bootstrap_servers, batch.records, rate=rate, topic_prefix=settings.topic_prefix
    )
    if expect_out:
        _write_json(
            expect_out,
            {
                "complete": {
                    str(a.album_id): a.tenant_id for a in batch.albums.values() if a.complete
                },
                "missing_vision": sorted(
                    a.album_id for a in batch.albums.values() if not a.complete
                ),
            },
        )
    kinds = Counter(r.kind for r in batch.records)
    _out(
        f"produced {sent} records for {albums} albums "
        f"(album ids {first_album_id}..{first_album_id + albums - 1}): {dict(kinds)}"
    )


@app.command(
    option(
        "--stage",
        default=None,
        help="only records of this stage (validate, assembler, sink.postgres, ...)",
    ),
    option("--error-type", default=None, help="only records with this error type"),
    option("--source-topic", default=None, help="only records from this topic"),
    option("--limit", type=int, default=0, help="replay at most this many (0: all)"),
    option("--dry-run", is_flag=True, default=False, help="list what would be replayed"),
    option(
        "--from-beginning",
        is_flag=True,
        default=False,
        help="ignore progress of earlier replays and read the whole DLQ",
    ),
)
async def dlq_replay(
    self: Any,
    stage: str | None,
    error_type: str | None,
    source_topic: str | None,
    limit: int,
    dry_run: bool,
    from_beginning: bool,
) -> None:
    """Send albums.dlq records back to their source topic (original key and value bytes).

    Progress is kept in the consumer group `{APP_ID}-dlq-replay`, so a second run replays only
    what was dead-lettered since; records that do not match the filters are passed over.
    """
    result = await replay_dlq(
        settings.bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        app_id=settings.app_id,
        group_id=f"{settings.app_id}-dlq-replay",
        stage=stage,
        error_type=error_type,
        source_topic=source_topic,
        limit=limit,
        dry_run=dry_run,
        from_beginning=from_beginning,
        echo=_out,
    )
    _out(f"replayed {result['replayed']}, skipped {result['skipped']}, unreadable {result['bad']}")


@app.command()
async def migrate(self: Any) -> None:
    """Apply the Postgres migrations (Alembic) to DATABASE_URL."""
    await upgrade_async(settings.database_url.get())
    _out(f"migrated {redact_url(settings.database_url.get())} to head")


@app.command()
async def topics(self: Any) -> None:
    """List topics with their partition counts."""
    admin = AIOKafkaAdminClient(**kafka_options(), bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        for t in sorted(await admin.list_topics()):
            meta = await admin.describe_topics([t])
            _out(f"{t}\t{len(meta[0]['partitions'])} partitions")
    finally:
        await admin.close()


@app.command(option("--topic", required=True))
async def describe(self: Any, topic: str) -> None:
    """Partitions, leaders and offsets of one topic."""
    consumer = AIOKafkaConsumer(**kafka_options(), bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            _out(f"no topic {topic!r}")
            return
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            _out(f"{topic}[{tp.partition}] offsets {begin[tp]}..{end[tp]} ({end[tp] - begin[tp]})")
        _out(f"total {sum(end[tp] - begin[tp] for tp in tps)} records")
    finally:
        await consumer.stop()


@app.command(
    option("--topic", required=True),
    option("--n", type=int, default=10, show_default=True, help="last N per partition"),
    option("--follow", is_flag=True, default=False),
)
async def tail(self: Any, topic: str, n: int, follow: bool) -> None:
    """Print the last records of a topic, JSON values decoded (DLQ bytes un-base64'd)."""
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, end[tp] - n))
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=1000)
            for msgs in batch.values():
                for m in msgs:
                    _out(_render(m.topic, m.partition, m.offset, m.key, m.value))
            done = all([await consumer.position(tp) >= end[tp] for tp in tps])
            if done and not follow:
                break
            if not batch:
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


def _render(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> str:
    try:
        decoded: Any = orjson.loads(value) if value is not None else None
        if topic == ALBUMS_DLQ and isinstance(decoded, dict):
            rec = DlqRecord.decode(value)
            decoded = {k: v for k, v in decoded.items() if k not in ("key_b64", "value_b64")}
            decoded["value"] = (rec.value or b"").decode("utf-8", "replace")
        body = orjson.dumps(decoded).decode()
    except (orjson.JSONDecodeError, InvalidEvent):
        body = repr(value)
    k = key.decode("utf-8", "replace") if key is not None else None
    return f"{topic}[{partition}]@{offset} key={k} {body}"


@app.command()
async def vision_stand_in(self: Any) -> None:
    """Vision events for every album ingestion stored (no vision service runs locally)."""
    from streams.showcase import vision_for_ingested

    albums = await vision_for_ingested(
        settings.bootstrap_servers,
        settings.database_url.get(),
        settings.ingest_tenant_id,
        settings.topic_prefix,
    )
    posts = sum(len(a.posts) for a in albums)
    _out(f"stand-in vision for {posts} posts of {len(albums)} ingested albums")


@app.command(
    option("--expect", default=None, help="JSON written by generate-albums --expect-out"),
    option(
        "--ingested/--no-ingested",
        default=True,
        show_default=True,
        help="also wait for the albums ingestion stored (INGEST_TENANT_ID)",
    ),
    option("--wait-seconds", type=float, default=300.0, show_default=True),
)
async def await_albums(self: Any, expect: str | None, ingested: bool, wait_seconds: float) -> None:
    """Wait (progress bar) until the expected albums are assembled and in every store."""
    # load-test and showcase code stays out of the worker, which imports this module
    from streams.showcase import await_albums as await_albums_in_stores
    from streams.showcase import ingested_albums

    expected: dict[int, str] = {}
    missing: list[int] = []
    if expect:
        doc = _read_json(expect)
        expected.update({int(k): v for k, v in doc["complete"].items()})
        missing = doc.get("missing_vision", [])
    rows = []
    if ingested:
        rows = await ingested_albums(settings.database_url.get(), settings.ingest_tenant_id)
        expected.update({a.album_id: a.tenant_id for a in rows})
    seen = await await_albums_in_stores(
        settings.bootstrap_servers,
        f"{settings.topic_prefix}album.assembled",
        f"http://{settings.web_host}:{settings.web_port}",
        expected,
        wait_seconds=wait_seconds,
        echo=_out,
    )
    _out(
        f"{len(seen.assembled)} of {len(expected)} albums assembled complete, "
        f"{len(seen.stored)} in every enabled store"
    )
    if rows:
        first = rows[0]
        _out(
            f"{len(rows)} albums came from the Telegram recording (tenant {first.tenant_id!r}); "
            f"one of them in every store:\n    curl -H 'Authorization: Bearer {web_token()}' "
            f"'http://{settings.web_host}:{settings.web_port}/stores/{first.album_id}/"
            f"?tenant_id={first.tenant_id}'"
        )
    if missing:
        _out(
            f"{len(missing)} albums miss a vision event on purpose: they are emitted 'partial' "
            f"{settings.album_deadline_seconds:g}s after they arrived (ALBUM_DEADLINE_SECONDS)"
        )
    if len(seen.stored) < len(expected):
        late = sorted(set(expected) - seen.stored)[:5]
        raise SystemExit(f"gave up after {wait_seconds:g}s; not stored yet: {late} ...")


@app.command(
    option("--albums", type=int, default=2000, show_default=True, help="albums to send (0: none)"),
    option("--rate", type=float, default=500.0, show_default=True, help="records/s of the load"),
    option(
        "--since",
        type=float,
        default=900.0,
        show_default=True,
        help="with --albums 0: report the last this many seconds",
    ),
    option("--out", default=".stack/report", show_default=True, help="folder of PNGs and summary"),
    option("--wait-seconds", type=float, default=600.0, show_default=True),
    option(
        "--scrape-seconds",
        type=float,
        default=5.0,
        show_default=True,
        help="Prometheus's scrape interval (Grafana's $__rate_interval depends on it)",
    ),
)
async def report(
    self: Any,
    albums: int,
    rate: float,
    since: float,
    out: str,
    wait_seconds: float,
    scrape_seconds: float,
) -> None:
    """Run a load test (or read the last minutes) and render the dashboard's key panels from
    Prometheus (PROMETHEUS_URL) to PNGs, with a Markdown summary beside them."""
    from pathlib import Path

    from streams.report import report_command

    await report_command(
        settings,
        albums=albums,
        rate=rate,
        since=since,
        out=Path(out),
        wait_seconds=wait_seconds,
        scrape_seconds=scrape_seconds,
        echo=_out,
    )
