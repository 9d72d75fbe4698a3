"""Settings: defaults of DESIGN.md, overrides from the environment, validation, secrecy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.settings import Secret, Settings, SettingsError, redact_url


def test_defaults_match_the_design() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.app_id == "album-pipeline"
    assert s.topic_partitions == 8
    assert s.processing_guarantee == "at_least_once"
    assert s.album_deadline_seconds == 600
    assert s.album_state_retention_seconds == 86400
    assert s.web_port == 6066
    assert s.data_dir == Path(".stack/data")
    assert s.neo4j_uri == "bolt://127.0.0.1:7687"
    assert s.qdrant_url == ""
    assert s.database_url.get().endswith("@127.0.0.1:5432/albums")


def test_environment_overrides_and_types() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2",
            "TOPIC_PARTITIONS": "3",
            "PROCESSING_GUARANTEE": "EXACTLY_ONCE",
            "ALBUM_DEADLINE_SECONDS": "2.5",
            "DATA_DIR": "/srv/albums",
            "S3_SECRET_KEY": "s3cr3t",
        }
    )
    assert s.bootstrap_servers == ["a:1", "b:2"]
    assert s.broker_urls == ["kafka://a:1", "kafka://b:2"]
    assert s.topic_partitions == 3
    assert s.exactly_once
    assert s.album_deadline_seconds == 2.5
    # one folder per APP_ID: another app id never reads this one's local state
    assert s.table_dir == Path("/srv/albums/faust/album-pipeline")
    assert s.s3_secret_key.get() == "s3cr3t"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOPIC_PARTITIONS", "eight"),
        ("TOPIC_PARTITIONS", "0"),
        ("PROCESSING_GUARANTEE", "at_most_once"),
        ("ALBUM_DEADLINE_SECONDS", "-1"),
        ("WEB_PORT", "70000"),
        ("APP_ID", "bad id/with spaces"),
        ("KAFKA_BOOTSTRAP_SERVERS", " , "),
    ],
)
def test_invalid_values_are_refused_with_the_variable_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.app_id = "other"  # type: ignore[misc]


def test_secrets_never_show() -> None:
    s = Settings.from_env({"NEO4J_PASSWORD": "hunter2", "DATABASE_URL": "postgresql://u:pw@h/db"})
    shown = repr(s) + str(s.public())
    assert "hunter2" not in shown
    assert ":pw@" not in shown
    assert s.public()["DATABASE_URL"] == "postgresql://u:***@h/db"
    assert repr(Secret("x")) == "Secret('**********')"
    assert redact_url("bolt://h:7687") == "bolt://h:7687"


def test_every_variable_is_documented_once() -> None:
    docs = Settings.documented()
    for name in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "APP_ID",
        "TOPIC_PARTITIONS",
        "PROCESSING_GUARANTEE",
        "ALBUM_DEADLINE_SECONDS",
        "ALBUM_STATE_RETENTION_SECONDS",
        "WEB_PORT",
        "DATA_DIR",
        "DATABASE_URL",
        "S3_ENDPOINT_URL",
        "S3_BUCKET",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "QDRANT_URL",
        "NEO4J_URI",
        "NEO4J_USER",
        "NEO4J_PASSWORD",
        "TELEGRAM_API_ID",
        "TELEGRAM_API_HASH",
        "TELEGRAM_SESSION",
    ]:
        assert docs.get(name), name
    assert len(docs) == len(dataclasses.fields(Settings))


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(SettingsError, match="unknown"):
        Settings.from_env({}, no_such_setting=1)


@pytest.mark.parametrize(
    ("stages", "sinks", "mode", "groups"),
    [
        ("router,sinks", "s3", "spawn", ("router", "sinks")),
        (
            "router,sinks:qdrant,sinks:s3+postgres+neo4j",  # the default
            "s3,qdrant",
            "spawn",
            ("router", "sinks:qdrant", "sinks:s3+postgres+neo4j"),
        ),
        (
            "router,sinks:qdrant,sinks:s3+postgres+neo4j",
            "s3",
            "spawn",
            ("router", "sinks:s3+postgres+neo4j"),
        ),
        ("router,sinks", "", "spawn", ("router",)),  # no sink asked for: no sinks process
        ("sinks", "s3", "spawn", ("sinks",)),
        ("inline", "s3", "inline", ("router", "sinks")),
        ("", "s3", "external", ()),
    ],
)
def test_stages_say_where_the_stage_loops_run(
    stages: str, sinks: str, mode: str, groups: tuple[str, ...]
) -> None:
    s = Settings.from_env({"STAGES": stages, "SINKS": sinks})
    assert s.stages_mode == mode
    assert s.stage_groups == groups


def test_a_sink_group_runs_the_sinks_it_names_that_sinks_asks_for() -> None:
    s = Settings.from_env({"SINKS": "s3,neo4j"})
    assert s.sinks_of("sinks:s3+postgres+neo4j") == ("s3", "neo4j")
    assert s.sinks_of("sinks") == ("s3", "neo4j")
    assert s.sinks_of("router") == ()


@pytest.mark.parametrize(
    "value", ["router,watch", "inline,router", "everything", "sinks:s3+elastic", "sinks:"]
)
def test_unknown_stage_groups_are_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="STAGES"):
        Settings.from_env({"STAGES": value})


@pytest.mark.parametrize("value", ["100000,50", "a,b,c", "0,10,10"])
def test_gc_threshold_must_be_three_positive_integers(value: str) -> None:
    with pytest.raises(SettingsError, match="GC_THRESHOLD"):
        Settings.from_env({"GC_THRESHOLD": value})


@pytest.mark.parametrize(
    ("guarantee", "groups"), [("at_least_once", ("router",)), ("exactly_once", ("router", "relay"))]
)
def test_the_relay_runs_in_a_process_of_its_own_under_exactly_once_only(
    guarantee: str, groups: tuple[str, ...]
) -> None:
    s = Settings.from_env({"STAGES": "router,relay", "PROCESSING_GUARANTEE": guarantee})
    assert s.stage_groups == groups


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@w0rd@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:only-a-password@h:6379/0", "redis://:***@h:6379/0"),
        ("https://ghp_tokenAsUser@host/x", "https://***@host/x"),
        ("http://h:6333/?api_key=abc&timeout=5", "http://h:6333/?api_key=***&timeout=5"),
        (
            "https://s3/b/k?X-Amz-Signature=abc&X-Amz-Credential=c&x=1#f",
            "https://s3/b/k?X-Amz-Signature=***&X-Amz-Credential=***&x=1#f",
        ),
        ("postgresql://h/db?user=u&password=pw", "postgresql://h/db?user=u&password=***"),
        ("bolt://h:7687", "bolt://h:7687"),
        ("", ""),
    ],
)
def test_redact_url_masks_every_credential(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_settings_show_masked_and_work_unmasked() -> None:
    s = Settings.from_env(
        {"QDRANT_URL": "https://u:qpw@q:6333", "NEO4J_URI": "neo4j://n:npw@h:7687"},
        s3_endpoint_url="http://k:s3pw@s3:9000",
    )
    shown = repr(s) + str(s.public())
    for secret in ("qpw", "npw", "s3pw"):
        assert secret not in shown
    assert s.public()["QDRANT_URL"] == "https://u:***@q:6333"
    # the clients get the real value
    assert str(s.qdrant_url) == "https://u:qpw@q:6333"
    assert f"{s.s3_endpoint_url}" == "http://k:s3pw@s3:9000"


def test_kafka_security_settings_are_checked_and_reach_the_clients() -> None:
    from streams.kafka_security import kafka_options

    with pytest.raises(SettingsError, match="KAFKA_SECURITY_PROTOCOL"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(SettingsError, match="KAFKA_SASL_USERNAME"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(SettingsError, match="KAFKA_SASL_MECHANISM"):
        Settings.from_env({"KAFKA_SASL_MECHANISM": "GSSAPI"})
    cfg = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "pw-123",
        }
    )
    options = kafka_options(cfg)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "pw-123")
    assert options["ssl_context"] is not None  # the system's CAs when no KAFKA_SSL_CAFILE
    assert "pw-123" not in repr(cfg) + str(cfg.public())
