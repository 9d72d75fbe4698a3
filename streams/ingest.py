"""`python -m streams ingest login | run | backfill | record | replay`: Telegram ingestion.

One process per Telegram account. Each command wires the same parts: Postgres (IngestStore),
S3 (media), an idempotent Kafka producer with the outbox publisher and dead letters, the
ingest web port (`/health`, `/metrics` on INGEST_WEB_PORT) and a progress bar on a terminal
(plain log lines otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tqdm import tqdm

from storage.postgres.ingest import ChannelBusy, IngestStore
from storage.s3 import S3Storage
from storage.telegram.client import TelethonSource
from storage.telegram.ingestor import Ingestor
from storage.telegram.media import MediaStore
from storage.telegram.metrics import IngestMetrics
from storage.telegram.outbox import DeadLetters, OutboxPublisher, ingest_producer
from storage.telegram.recording import RecordingSource, RecordingWriter, record_messages
from storage.telegram.source import TelegramSource
from streams.metrics import describe_build
from streams.settings import Settings, settings

log = logging.getLogger("streams.ingest")

LOCK_RETRY_SECONDS = 30.0


# -- progress ------------------------------------------------------------------------------


class ProgressReport:
    """A tqdm bar on a terminal (messages, albums, MB); a log line every 5 s otherwise."""

    def __init__(self, ingestor: Ingestor, total: int | None, what: str) -> None:
        self.ingestor = ingestor
        self.tty = sys.stderr.isatty()
        self.what = what
        self._bar = tqdm(total=total, unit="msg", desc=what, disable=not self.tty, leave=True)
        self._last_log = time.monotonic()
        self._shown = 0

    def step(self) -> None:
        p = self.ingestor.progress
        mb = p.media_bytes / 1e6
        if self.tty:
            self._bar.update(p.messages - self._shown)
            self._shown = p.messages
            self._bar.set_postfix(albums=p.albums, MB=f"{mb:.1f}", refresh=False)
        elif time.monotonic() - self._last_log >= 5.0:
            self._last_log = time.monotonic()
            log.info("%s: %d messages, %d albums, %.1f MB", self.what, p.messages, p.albums, mb)

    def close(self) -> None:
        self.step()
        self._bar.close()
        p = self.ingestor.progress
        log.info(
            "%s done: %d messages, %d albums %s, %.1f MB media, %d dead letters",
            self.what,
            p.messages,
            p.albums,
            dict(sorted(p.outcomes.items())),
            p.media_bytes / 1e6,
            p.dead_letters,
        )


# -- the parts every command shares --------------------------------------------------------


@dataclass
class Runtime:
    """Everything an ingest command runs with, started and stopped together."""

    settings: Settings
    store: IngestStore
    s3: S3Storage
    media: MediaStore
    publisher: OutboxPublisher
    dead_letters: DeadLetters
    metrics: IngestMetrics
    channels: dict[int, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def ingestor(self, source: TelegramSource) -> Ingestor:
        ing = Ingestor(
            source,
            self.store,
            self.media,
            self.dead_letters,
            self.metrics,
            tenant_id=self.settings.ingest_tenant_id,
            parsed_topic=f"{self.settings.topic_prefix}albums.parsed",
            debounce_seconds=self.settings.ingest_album_debounce_seconds,
            on_committed=self.publisher.wake,
        )

        def on_bytes(n: int) -> None:
            ing.progress.media_bytes += n
            self.metrics.media_bytes.inc(n)

        self.media._on_bytes = on_bytes
        return ing


@contextlib.asynccontextmanager
async def runtime(cfg: Settings, *, web_port: int | None = None) -> AsyncIterator[Runtime]:
    """Start Postgres, S3, Kafka, the publisher and the web port; stop them in reverse.

    On the way out every committed outbox row is published (bounded by 30 s), so a command
    that returns has emitted everything it stored.
    """
    metrics = IngestMetrics()
    describe_build(metrics.registry)
    async with AsyncExitStack() as stack:
        store = IngestStore(cfg.database_url.get(), cfg.ingest_tenant_id)
        await store.start()
        stack.push_async_callback(store.close)
        s3 = S3Storage(
            cfg.s3_endpoint_url,
            cfg.s3_bucket,
            cfg.s3_access_key,
            cfg.s3_secret_key.get(),
            cfg.s3_region,
        )
        await s3.start()
        stack.push_async_callback(s3.close)
        producer = ingest_producer(cfg.bootstrap_servers)
        await producer.start()
        stack.push_async_callback(producer.stop)
        publisher = OutboxPublisher(store, producer, metrics)
        rt = Runtime(
            settings=cfg,
            store=store,
            s3=s3,
            media=MediaStore(
                s3,
                max_bytes=cfg.ingest_max_media_bytes,
                concurrency=cfg.ingest_download_concurrency,
            ),
            publisher=publisher,
            dead_letters=DeadLetters(producer, f"{cfg.topic_prefix}albums.dlq", metrics),
            metrics=metrics,
        )
        port = cfg.ingest_web_port if web_port is None else web_port
        if port:
            runner = await _start_web(rt, cfg.web_bind, port)
            stack.push_async_callback(runner.cleanup)
        task = asyncio.create_task(publisher.run(), name="outbox-publisher")

        async def drain() -> None:
            publisher.stop()
            try:
                await asyncio.wait_for(task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            try:
                await asyncio.wait_for(publisher.publish_pending(), timeout=30)
            except Exception as exc:  # stays in the outbox; the next run sends it
                log.warning("outbox not fully published at exit (sent next run): %s", exc)

        stack.push_async_callback(drain)
        yield rt


async def _start_web(rt: Runtime, host: str, port: int) -> web.AppRunner:
    async def health(request: web.Request) -> web.Response:
        cursors = await rt.store.cursors()
        body = {
            "status": "ok" if rt.publisher.last_error is None else "degraded",
            "tenant_id": rt.settings.ingest_tenant_id,
            "uptime_seconds": round(time.time() - rt.started_at, 1),
            "outbox": {
                "published": rt.publisher.published,
                "backlog": await rt.store.outbox_backlog(),
                "last_error": rt.publisher.last_error,
            },
            "channels": {
                str(c): {"name": rt.channels.get(c), "cursor": cur, "last_seen_id": seen}
                for c, (cur, seen) in sorted(cursors.items())
                if not rt.channels or c in rt.channels
            },
        }
        return web.json_response(body)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(rt.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("ingest web on http://%s:%d (/health, /metrics)", host, port)
    return runner


async def hold_channel_locks(rt: Runtime, stack: AsyncExitStack, channel_ids: list[int]) -> None:
    """Take each channel's advisory lock; a channel another process ingests is refused."""
    for cid in channel_ids:
        await stack.enter_async_context(rt.store.channel_lock(cid))


def _telegram_client(cfg: Settings) -> Any:
    from telethon import TelegramClient
    from telethon.sessions import StringSession

    if not cfg.telegram_api_id or not cfg.telegram_api_hash:
        raise click.UsageError("TELEGRAM_API_ID and TELEGRAM_API_HASH must be set")
    return TelegramClient(
        StringSession(cfg.telegram_session.get() or None),
        cfg.telegram_api_id,
        cfg.telegram_api_hash.get(),
        flood_sleep_threshold=cfg.ingest_flood_sleep_threshold,
        connection_retries=10,
        retry_delay=2,
        auto_reconnect=True,
        receive_updates=True,
    )


async def _connected_client(cfg: Settings) -> Any:
    client = _telegram_client(cfg)
    await client.connect()
    if not await client.is_user_authorized():
        await client.disconnect()
        raise click.UsageError("TELEGRAM_SESSION is not authorized: run `ingest login` first")
    return client


def _run(main: Callable[[], Awaitable[None]]) -> None:
    """Run a command's coroutine; SIGTERM/SIGINT cancel it so every part stops cleanly."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        await main()

    try:
        asyncio.run(guarded())
    except asyncio.CancelledError:
        log.info("stopped")
    except ChannelBusy as exc:
        raise click.ClickException(str(exc)) from exc


# -- commands ------------------------------------------------------------------------------


@click.group()
def ingest() -> None:
    """Telegram ingestion (one process per account): login, run, backfill, record, replay."""


@ingest.command()
def login() -> None:
    """Log in interactively and print a TELEGRAM_SESSION string (keep it secret)."""

    async def main() -> None:
        client = _telegram_client(settings)
        await client.start()
        session = client.session.save()
        await client.disconnect()
        click.echo("Set this in your environment (it is a login; keep it secret):")
        click.echo(f"TELEGRAM_SESSION={session}")

    _run(main)


@ingest.command()
def run() -> None:
    """Backfill every TELEGRAM_CHANNELS channel from its cursor, then follow it live."""
    from storage.telegram.live import follow

    if not settings.channel_names:
        raise click.UsageError("TELEGRAM_CHANNELS is empty")

    async def main() -> None:
        client = await _connected_client(settings)
        try:
            async with runtime(settings) as rt:
                source = TelethonSource(client, rt.metrics)
                await follow(rt, client, source, settings.channel_names)
        finally:
            await client.disconnect()

    _run(main)


@ingest.command()
@click.option("--channel", required=True, help="username or id")
@click.option("--min-id", type=int, default=None, help="start after this message id")
@click.option("--since", type=click.DateTime(), default=None, help="only messages since DATE")
def backfill(channel: str, min_id: int | None, since: datetime | None) -> None:
    """Store a channel's history (resumable: without --min-id it starts at the cursor)."""

    async def main() -> None:
        client = await _connected_client(settings)
        try:
            async with runtime(settings) as rt, AsyncExitStack() as locks:
                source = TelethonSource(client, rt.metrics)
                cid = await source.resolve(_channel_arg(channel))
                rt.channels[cid] = channel
                await hold_channel_locks(rt, locks, [cid])
                ing = rt.ingestor(source)
                report = ProgressReport(ing, None, f"backfill {channel}")
                when = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
                try:
                    await ing.backfill(cid, min_id=min_id, since=when, on_step=report.step)
                finally:
                    report.close()
        finally:
            await client.disconnect()

    _run(main)


@ingest.command()
@click.option("--channel", required=True, help="username or id")
@click.option("--limit", type=int, default=100, show_default=True, help="newest N messages")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
def record(channel: str, limit: int, out: Path) -> None:
    """Write the newest messages of a channel (with media) as a recording, oldest first."""

    async def main() -> None:
        client = await _connected_client(settings)
        try:
            source = TelethonSource(client, IngestMetrics())
            cid = await source.resolve(_channel_arg(channel))
            messages = await source.latest(cid, limit)
            bar = tqdm(total=len(messages), unit="msg", disable=not sys.stderr.isatty())
            with out.open("wb") as fh:
                writer = RecordingWriter(fh)
                await record_messages(
                    source,
                    cid,
                    messages,
                    writer,
                    max_media_bytes=settings.ingest_max_media_bytes,
                    on_step=lambda: _advance(bar),
                )
            bar.close()
            log.info("recorded %d messages of %s to %s", writer.lines, channel, out)
        finally:
            await client.disconnect()

    _run(main)


@ingest.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def replay(file: Path) -> None:
    """Run a recording through the same pipeline as live updates (Postgres, S3, Kafka)."""

    async def main() -> None:
        await replay_file(settings, file)

    _run(main)


async def replay_file(cfg: Settings, file: Path, *, web_port: int | None = None) -> Ingestor:
    """`ingest replay FILE`; returns the ingestor (its progress) for tools and benchmarks."""
    async with runtime(cfg, web_port=web_port) as rt, AsyncExitStack() as locks:
        source = RecordingSource()
        ing = rt.ingestor(source)
        locked: set[int] = set()

        async def guard(channel_id: int) -> None:
            if channel_id not in locked:
                await locks.enter_async_context(rt.store.channel_lock(channel_id))
                locked.add(channel_id)

        ing.channel_guard = guard
        total = sum(1 for line in file.open("rb") if line.strip())
        report = ProgressReport(ing, total, f"replay {file.name}")
        try:
            await ing.replay(file, on_step=report.step)
        finally:
            report.close()
        return ing


def _advance(bar: tqdm[Any]) -> None:
    bar.update(1)


def _channel_arg(channel: str) -> str | int:
    try:
        return int(channel)
    except ValueError:
        return channel
