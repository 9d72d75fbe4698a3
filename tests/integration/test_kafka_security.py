"""Kafka clients over SASL, from settings alone: the local broker's SASL_PLAINTEXT listener
(compose/local/services/kafka.sh) lets the right user in and keeps the wrong one out."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from streams.kafka_security import faust_credentials, kafka_options
from streams.settings import Settings

SASL_PORT = os.environ.get("KAFKA_SASL_PORT", "9094")
USER = os.environ.get("KAFKA_SASL_USER", "albums")
PASSWORD = os.environ.get("KAFKA_SASL_PASSWORD", "albums-kafka-secret")


def sasl_settings(password: str = PASSWORD) -> Settings:
    return Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{SASL_PORT}",
            "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": password,
        }
    )


async def test_a_client_configured_for_sasl_produces_and_consumes(unique: str) -> None:
    cfg = sasl_settings()
    assert "albums-kafka-secret" not in repr(cfg)
    topic = f"it-sasl-{unique}"
    producer = AIOKafkaProducer(**kafka_options(cfg), bootstrap_servers=cfg.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over sasl")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options(cfg),
        bootstrap_servers=cfg.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert record.value == b"over sasl"
    credentials = faust_credentials(cfg)
    assert (credentials.mechanism.name, credentials.username) == ("PLAIN", USER)


@pytest.mark.parametrize("how", ["wrong password", "no sasl"])
async def test_the_sasl_listener_keeps_out_a_client_without_the_credentials(how: str) -> None:
    cfg = sasl_settings("not-the-password")
    options = kafka_options(cfg) if how == "wrong password" else {}
    producer = AIOKafkaProducer(
        **options, bootstrap_servers=cfg.bootstrap_servers, request_timeout_ms=5000
    )
    # the broker refuses the login (SaslAuthenticationFailed, logged) or closes a connection that
    # does not speak SASL; either way the client cannot bootstrap
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()


def test_plaintext_is_the_default_and_needs_no_options() -> None:
    cfg = Settings.from_env({})
    assert kafka_options(cfg) == {}
    assert faust_credentials(cfg) is None
