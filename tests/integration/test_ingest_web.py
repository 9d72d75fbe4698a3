"""The ingest process's own web port: /health and /metrics while a replay runs (real servers)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from storage.telegram.recording import RecordingSource, RecordingWriter
from storage.telegram.samples import photo_message, text_message
from streams.ingest import runtime
from streams.settings import Settings
from tests.conftest import free_port
from tests.e2e.ingest_support import T0, channel_for

pytestmark = pytest.mark.integration


async def test_health_and_metrics_of_an_ingest_process(
    base_settings: Settings,
    postgres_url: str,
    kafka: list[str],
    s3_settings: Settings,
    unique: str,
    tmp_path: Path,
) -> None:
    channel = channel_for(unique)
    path = tmp_path / "rec.jsonl"
    with path.open("wb") as fh:
        w = RecordingWriter(fh)
        for mid in (1, 2):
            w.message(channel, photo_message(channel, mid, date=T0, grouped_id=3, size=4), b"abcd")
        w.message(channel, text_message(channel, 3, date=T0, text="x"), None)
        fh.write(b"garbage\n")
    port = free_port()
    cfg = Settings.from_env(
        database_url=base_settings.database_url,
        topic_prefix=f"web-{unique}.",
        ingest_tenant_id=f"t{unique}",
        ingest_web_port=port,
    )
    async with runtime(cfg) as rt, aiohttp.ClientSession() as http:
        ing = rt.ingestor(RecordingSource())
        await ing.replay(path)
        async with http.get(f"http://127.0.0.1:{port}/health") as r:
            assert r.status == 200
            health = await r.json()
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            metrics = await r.text()
    assert health["status"] == "ok"
    assert health["tenant_id"] == f"t{unique}"
    assert health["channels"][str(channel)]["cursor"] == 3
    assert 'ingest_albums_total{outcome="new"} 1.0' in metrics
    assert 'ingest_messages_total{kind="album_part"} 2.0' in metrics
    assert 'ingest_messages_total{kind="single"} 1.0' in metrics
    assert 'ingest_messages_total{kind="invalid"} 1.0' in metrics
    assert "ingest_media_bytes_total 8.0" in metrics
    assert "album_pipeline_build_info{" in metrics
    assert f'ingest_channel_cursor{{channel="{channel}"}} 3.0' in metrics
    assert 'ingest_dlq_total{error_type="invalid_json"} 1.0' in metrics
    # the worker's metrics are not served here
    assert "albums_assembled_total" not in metrics
