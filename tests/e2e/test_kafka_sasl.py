"""A worker whose every Kafka client goes through the broker's SASL listener (settings only):
the albums come out as over plaintext. A client left on plaintext would find nothing on that
port, and the albums would not."""

from __future__ import annotations

import os

import pytest

from streams.generator import GeneratorConfig, generate
from tests.e2e.pipeline import Pipeline, consume_until, decoded

pytestmark = pytest.mark.e2e


async def test_a_worker_over_sasl_assembles_albums(pipeline: Pipeline) -> None:
    gen = generate(GeneratorConfig(albums=30, seed=17))
    worker = pipeline.start_worker(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{os.environ.get('KAFKA_SASL_PORT', '9094')}",
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="PLAIN",
        KAFKA_SASL_USERNAME=os.environ.get("KAFKA_SASL_USER", "albums"),
        KAFKA_SASL_PASSWORD=os.environ.get("KAFKA_SASL_PASSWORD", "albums-kafka-secret"),
        LAG_INTERVAL_SECONDS="2",
    )
    worker.wait_healthy()
    await pipeline.produce(gen.records)  # the test's own client uses the plaintext listener
    records = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        lambda rs: len({o["album_id"] for o in decoded(rs)}) >= 30,
        within=120,
    )
    assert {o["album_id"] for o in decoded(records)} == set(gen.albums)
    # the lag monitor measured through SASL too
    _, detailed = worker.get("/health/detailed")
    assert detailed["tasks"]["album_assembler"]["backlog_size"] is not None, detailed
    assert "albums-kafka-secret" not in worker.log_path.read_text(errors="replace")
