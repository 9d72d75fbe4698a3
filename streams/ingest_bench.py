"""Throughput of `ingest replay` on the real Postgres, S3 and Kafka (scripts/bench_ingest.py).

Each run writes a fresh recording (its own channel, so every album is new), replays it once
(everything is stored: rows, media uploads, outbox, publication) and once more (everything is
unchanged: the persistent de-duplication path). Messages/s, albums/s and media MB/s of both.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.telegram.recording import RecordingWriter
from storage.telegram.samples import media_bytes, photo_message, text_message, video_message
from streams.ingest import replay_file
from streams.settings import Settings

T0 = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReplayRun:
    phase: str
    messages: int
    albums: int
    media_bytes: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def albums_per_second(self) -> float:
        return self.albums / self.seconds

    @property
    def media_mb_per_second(self) -> float:
        return self.media_bytes / 1e6 / self.seconds


def write_bench_recording(
    path: Path, channel_id: int, albums: int, parts: int, media_size: int, seed: str
) -> int:
    """`albums` albums of `parts` parts (photos and a video), a text post after each."""
    with path.open("wb") as fh:
        w = RecordingWriter(fh)
        mid = 1
        for a in range(albums):
            when = T0 + timedelta(seconds=10 * a)
            for p in range(parts):
                data = media_bytes(f"{seed}:{mid}", media_size)
                build = video_message if p == parts - 1 else photo_message
                text = f"Альбом номер {a}: подпись" if p == 0 else ""
                w.message(
                    channel_id,
                    build(
                        channel_id, mid, date=when, grouped_id=10_000 + a, text=text, size=len(data)
                    ),
                    data,
                )
                mid += 1
            w.message(channel_id, text_message(channel_id, mid, date=when, text="пост"), None)
            mid += 1
        return w.lines


async def run_ingest_benchmark(
    base: Settings, *, albums: int, parts: int, media_size: int
) -> list[ReplayRun]:
    """One first replay and one repeat of a fresh recording; returns both runs."""
    run_id = uuid.uuid4().hex[:8]
    channel = -(10**12 + int(run_id, 16))
    cfg = Settings.from_env(
        database_url=base.database_url,
        topic_prefix=f"bench-ingest-{run_id}.",
        ingest_tenant_id=f"bench{run_id}",
        ingest_web_port=0,
        ingest_max_media_bytes=max(base.ingest_max_media_bytes, media_size),
    )
    out: list[ReplayRun] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        write_bench_recording(path, channel, albums, parts, media_size, run_id)
        for phase in ("first", "repeat"):
            t0 = time.perf_counter()
            ing = await replay_file(cfg, path, web_port=0)
            seconds = time.perf_counter() - t0
            p = ing.progress
            out.append(ReplayRun(phase, p.messages, p.albums, p.media_bytes, seconds))
    return out
