"""How every Kafka client of the pipeline connects: plaintext by default, or TLS and SASL.

A deployment turns security on with settings alone (README, "Kafka security"):

- `KAFKA_SECURITY_PROTOCOL`: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL;
- `KAFKA_SASL_MECHANISM` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), `KAFKA_SASL_USERNAME`,
  `KAFKA_SASL_PASSWORD`;
- `KAFKA_SSL_CAFILE` (the brokers' CA; empty: the system's), and for mutual TLS
  `KAFKA_SSL_CERTFILE` and `KAFKA_SSL_KEYFILE`.

`kafka_options()` gives the keyword arguments of every aiokafka client (producers, consumers,
admin clients, the tools' too) and `faust_credentials()` the Faust worker's, from the same
settings, so no client is left on plaintext by accident.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from streams.settings import Settings, settings


def ssl_context(config: Settings = settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None for the plaintext protocols)."""
    if not config.kafka_security_protocol.endswith("SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=config.kafka_ssl_cafile or None,
        certfile=config.kafka_ssl_certfile or None,
        keyfile=config.kafka_ssl_keyfile or None,
    )
    return context


def kafka_options(config: Settings = settings) -> dict[str, Any]:
    """Keyword arguments of an aiokafka client for the configured protocol (none for
    PLAINTEXT, aiokafka's default)."""
    protocol = config.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    context = ssl_context(config)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=config.kafka_sasl_mechanism,
            sasl_plain_username=config.kafka_sasl_username,
            sasl_plain_password=config.kafka_sasl_password.get(),
        )
    return options


def faust_credentials(config: Settings = settings) -> Any:
    """The Faust app's `broker_credentials` (None for PLAINTEXT)."""
    protocol = config.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(config))
    return faust.SASLCredentials(
        username=config.kafka_sasl_username,
        password=config.kafka_sasl_password.get(),
        ssl_context=ssl_context(config),
        mechanism=config.kafka_sasl_mechanism,
    )
