"""The dashboard and the alerts against the real thing: a Prometheus of this test's own loads
compose/prometheus/alerts.yml and scrapes a real worker (with its stage processes and three
sinks) and a real ingest runtime, every second, while albums flow.

- Every panel query of compose/grafana/dashboards/album_pipeline.json is evaluated through
  Prometheus's HTTP API with Grafana's variables substituted: each must succeed, and the main
  panels must return data.
- No alert fires in a healthy run but the DLQ one (the load carries malformed records).
- S3 stopped under load: AlbumSinkParking fires for the s3 sink.
- The worker stopped under load: AlbumPipelineWorkerDown fires within its `for:` (1 minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from storage.telegram.recording import RecordingSource, RecordingWriter
from storage.telegram.samples import photo_message
from streams.generator import GeneratorConfig, generate
from streams.ingest import runtime
from streams.panels import panel_queries, substitute
from streams.report import build_report
from streams.settings import Settings
from tests.conftest import free_port
from tests.e2e.ingest_support import T0, channel_for
from tests.e2e.pipeline import Pipeline
from tests.e2e.prometheus_support import (
    DASHBOARD,
    PrometheusProcess,
)
from tests.e2e.sinks_support import sink_env
from tests.e2e.test_sink_outage import stack

pytestmark = pytest.mark.e2e

ALBUMS = 1500
LOAD_SECONDS = 150
# panels that must show data after a minute of load (the others may be empty in a healthy
# run: retries, paused partitions, table recovery, active alerts)
MAIN_PANELS = {
    "Albums Parsed Rate",
    "Albums Assembled Rate",
    "Album Assembly Lag (p95, p50)",
    "Albums in Progress",
    "Album Items Count",
    "Album Aggregation Duration (p95)",
    "Album Vision Summary Size",
    "Consumer Lag by Stage",
    "Stage Throughput",
    "Dead Letters by Stage",
    "Sink Albums",
    "Sink Batch Duration (p95)",
    "Telegram Messages",
    "Ingested Albums",
    "Up",
    "Resident Memory",
}


def recording(path: Path, channel: int, albums: int) -> None:
    with path.open("wb") as fh:
        writer = RecordingWriter(fh)
        mid = 1
        for n in range(albums):
            for _ in range(3):
                writer.message(
                    channel,
                    photo_message(channel, mid, date=T0, grouped_id=1000 + n, size=4),
                    b"abcd",
                )
                mid += 1


def has_data(answer: dict[str, Any]) -> bool:
    for series in answer["data"]["result"]:
        for _t, v in series.get("values", []):
            if not math.isnan(float(v)):
                return True
    return False


async def test_dashboard_queries_and_alerts_on_a_real_prometheus(
    pipeline: Pipeline,
    base_settings: Settings,
    unique: str,
    tmp_path: Path,
) -> None:
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS,
            seed=41,
            tenants=(f"m{unique}",),
            first_album_id=3 * 10**9 + int(unique[:6], 16) * 10_000,
            missing_vision_share=0.05,
            malformed_share=0.02,
        )
    )
    pipeline.extra_env.update(
        sink_env(
            base_settings,
            SINKS="s3,postgres,neo4j",
            SINK_RETRIES="1",
            SINK_BACKOFF_SECONDS="0.5",
            ALBUM_DEADLINE_SECONDS="5",
            LAG_INTERVAL_SECONDS="2",
        )
    )
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    ingest_port = free_port()
    prometheus = PrometheusProcess(
        tmp_path / "prometheus",
        {"album-pipeline": f"127.0.0.1:{worker.web_port}", "ingest": f"127.0.0.1:{ingest_port}"},
    ).start()
    cfg = Settings.from_env(
        database_url=base_settings.database_url,
        topic_prefix=pipeline.prefix,
        ingest_tenant_id=f"m{unique}",
        ingest_web_port=ingest_port,
    )
    channel = channel_for(unique)
    rec = tmp_path / "rec.jsonl"
    recording(rec, channel, 40)
    rate = len(gen.records) / LOAD_SECONDS
    producing = asyncio.create_task(pipeline.produce(gen.records, rate=rate))
    try:
        async with runtime(cfg) as rt:
            await rt.ingestor(RecordingSource()).replay(rec)
            # a minute of load, then every panel over it
            await asyncio.sleep(60)
            end = time.time()
            start = end - 60
            step = 2.0
            dashboard = json.loads(DASHBOARD.read_text())
            failed, empty, with_data = [], set(), set()
            for row, title, expr in panel_queries(dashboard):
                query = substitute(expr, step=step, scrape=1.0, range_seconds=60)
                answer = await asyncio.to_thread(prometheus.query_range, query, start, end, step)
                if answer.get("status") != "success":
                    failed.append((row, title, query, answer.get("error")))
                elif has_data(answer):
                    with_data.add(title)
                else:
                    empty.add(title)
            print(f"panels with data: {sorted(with_data)}; empty: {sorted(empty - with_data)}")
            assert failed == []
            assert MAIN_PANELS - with_data == set(), "main panels without data"

            # a healthy run: nothing fires but the DLQ alert (malformed records in the load)
            firing = await asyncio.to_thread(prometheus.firing)
            assert set(firing) <= {"AlbumDeadLetters"}, firing

            # the run report of the same minute, from the same Prometheus
            report = await build_report(
                Settings.from_env(prometheus_url=prometheus.url),
                tmp_path / "report",
                start=start,
                end=end,
                load=None,
                scrape_seconds=1.0,
            )
            assert {"overview", "assembled", "assembly_lag", "sinks"} <= set(report.pngs)
            for png in report.pngs.values():
                assert png.read_bytes().startswith(b"\x89PNG"), png
            summary = (tmp_path / "report" / "summary.md").read_text()
            assembled = next(line for line in report.lines if "album.assembled" in line)
            assert "complete" in assembled, assembled
            assert "![Albums Assembled Rate](assembled.png)" in summary

        # S3 goes away under load: the s3 sink parks albums and the alert names it
        await asyncio.to_thread(stack, "down", "s3")
        try:
            parked_after = await asyncio.to_thread(prometheus.wait_firing, "AlbumSinkParking", 120)
            assert parked_after is not None, prometheus.firing()
            now_firing = await asyncio.to_thread(prometheus.firing)
            sinks = {a["sink"] for a in now_firing["AlbumSinkParking"]}
            assert sinks == {"s3"}
        finally:
            await asyncio.to_thread(stack, "up", "s3")
        print(f"AlbumSinkParking fired {parked_after:.0f} s after S3 stopped")

        # the worker stops under load: worker-down fires after its for: of 1 minute
        assert not producing.done()
        stopped_at = time.monotonic()
        await asyncio.to_thread(worker.stop)
        fired = await asyncio.to_thread(prometheus.wait_firing, "AlbumPipelineWorkerDown", 90)
        assert fired is not None, prometheus.firing()
        down_after = time.monotonic() - stopped_at
        assert down_after >= 60  # not before its for:
        print(f"AlbumPipelineWorkerDown fired {down_after:.0f} s after the worker stopped")
    finally:
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing
        prometheus.stop()
