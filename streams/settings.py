"""The one frozen Settings object: every environment variable of the pipeline is read here."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from schemas.events import TENANT_PATTERN, TENANT_RE

ProcessingGuarantee = Literal["at_least_once", "exactly_once"]


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


class Secret:
    """A string that never shows itself in repr(), str() or logs; `.get()` reveals it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


#: query parameters whose value is a credential (matched as a part of the name)
_SECRET_PARAMS = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential|session", re.IGNORECASE)
#: `scheme://userinfo@` up to the *last* @ before the path (a password may hold an @)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")


def redact_url(url: str) -> str:
    """A URL with its credentials masked, for logs and health output.

    `scheme://user:password@host` → `scheme://user:***@host` (an @ in the password, and an
    empty user, included); a user name alone (often a token) → `***@host`; a query parameter
    named like a credential (password, token, api_key, X-Amz-Signature, ...) → `name=***`.
    """
    match = _USERINFO.match(url)
    if match:
        scheme, userinfo = match.groups()
        user, sep, _password = userinfo.partition(":")
        masked = f"{user}:***" if sep else "***"
        url = f"{scheme}{masked}@{url[match.end() :]}"
    base, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = rest.partition("#")
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}=***" if eq and _SECRET_PARAMS.search(name) else part)
    return f"{base}?{'&'.join(parts)}{hash_}{fragment}"


class Url(str):
    """A URL setting: used as the string it is, shown (repr, health) with credentials masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))


def _env(name: str, default: object, *, doc: str) -> Any:
    # A dataclass field that records its environment variable's name and documentation.
    return field(default=default, metadata={"env": name, "doc": doc})


SINK_NAMES = ("s3", "postgres", "qdrant", "neo4j")


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of workers, tools and tests, read from the environment by `from_env()`.

    Args mirror the variables of DESIGN.md's Environment table; an empty value for an optional
    endpoint (S3_ENDPOINT_URL, NEO4J_URI, DATABASE_URL) disables that sink, and the worker
    reports it as disabled in /health/detailed.
    """

    kafka_bootstrap_servers: str = _env(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", doc="comma-separated host:port of brokers"
    )
    kafka_security_protocol: str = _env(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        doc="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL: how every Kafka client connects",
    )
    kafka_sasl_mechanism: str = _env(
        "KAFKA_SASL_MECHANISM", "PLAIN", doc="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_*)"
    )
    kafka_sasl_username: str = _env("KAFKA_SASL_USERNAME", "", doc="SASL user (SASL_*)")
    kafka_sasl_password: Secret = _env(
        "KAFKA_SASL_PASSWORD", Secret(""), doc="SASL password (SASL_*)"
    )
    kafka_ssl_cafile: str = _env(
        "KAFKA_SSL_CAFILE", "", doc="CA of the brokers' certificates (SSL, SASL_SSL; empty: system)"
    )
    kafka_ssl_certfile: str = _env(
        "KAFKA_SSL_CERTFILE", "", doc="client certificate for mutual TLS (optional)"
    )
    kafka_ssl_keyfile: str = _env("KAFKA_SSL_KEYFILE", "", doc="its private key (optional)")
    app_id: str = _env("APP_ID", "album-pipeline", doc="Faust app id: consumer group, topic prefix")
    topic_prefix: str = _env(
        "TOPIC_PREFIX",
        "",
        doc="prefix of the contract's topic names (empty in production; tests isolate with it)",
    )
    topic_partitions: int = _env(
        "TOPIC_PARTITIONS", 8, doc="partitions of internal topics and table changelogs"
    )
    consumer_session_timeout_seconds: float = _env(
        "CONSUMER_SESSION_TIMEOUT_SECONDS",
        30.0,
        doc="how long a silent worker keeps its partitions before the group moves them",
    )
    topic_replication_factor: int = _env(
        "TOPIC_REPLICATION_FACTOR",
        1,
        doc="replicas of every topic the pipeline creates (3 in production: then also "
        "min.insync.replicas 2)",
    )
    table_standby_replicas: int = _env(
        "TABLE_STANDBY_REPLICAS",
        1,
        doc="Faust standby replicas of each table partition on other workers (a failed "
        "worker's partitions resume without replaying their changelogs from the start)",
    )
    processing_guarantee: ProcessingGuarantee = _env(
        "PROCESSING_GUARANTEE", "at_least_once", doc="at_least_once or exactly_once"
    )
    album_deadline_seconds: float = _env(
        "ALBUM_DEADLINE_SECONDS", 600.0, doc="after this an incomplete album is emitted partial"
    )
    stream_idle_seconds: float = _env(
        "STREAM_IDLE_SECONDS",
        2.0,
        doc="deadlines run in stream time (record timestamps); an input source silent this long "
        "no longer holds it back, and a partition without traffic follows the clock after it "
        "(while the router has no lag)",
    )
    album_state_retention_seconds: float = _env(
        "ALBUM_STATE_RETENTION_SECONDS", 86400.0, doc="state kept after final assembly"
    )
    web_port: int = _env("WEB_PORT", 6066, doc="Faust web port")
    web_bind: str = _env("WEB_BIND", "127.0.0.1", doc="Faust web bind address")
    web_auth_token: Secret = _env(
        "WEB_AUTH_TOKEN",
        Secret(""),
        doc="bearer token of every web path but /health and /metrics (unset: made once and "
        "kept in DATA_DIR/web-token, mode 0600)",
    )
    web_host: str = _env(
        "WEB_HOST", "127.0.0.1", doc="host name other workers use to reach this one's web server"
    )
    data_dir: Path = _env(
        "DATA_DIR", Path(".stack/data"), doc="RocksDB tables and embedded Qdrant (relative to cwd)"
    )
    database_url: Secret = _env(
        "DATABASE_URL",
        Secret("postgresql+asyncpg://albums:albums@127.0.0.1:5432/albums"),
        doc="SQLAlchemy async URL of Postgres",
    )
    s3_endpoint_url: Url = _env("S3_ENDPOINT_URL", Url("http://127.0.0.1:9000"), doc="S3 endpoint")
    s3_bucket: str = _env("S3_BUCKET", "albums", doc="bucket of album summaries and media")
    s3_access_key: str = _env("S3_ACCESS_KEY", "albums", doc="S3 access key id")
    s3_secret_key: Secret = _env("S3_SECRET_KEY", Secret("albums-secret-key"), doc="S3 secret key")
    s3_region: str = _env("S3_REGION", "us-east-1", doc="S3 region name")
    qdrant_url: Url = _env(
        "QDRANT_URL", Url(""), doc="Qdrant server URL; empty = embedded local mode"
    )
    qdrant_api_key: Secret = _env("QDRANT_API_KEY", Secret(""), doc="Qdrant API key (server mode)")
    neo4j_uri: Url = _env("NEO4J_URI", Url("bolt://127.0.0.1:7687"), doc="Neo4j Bolt URI")
    neo4j_user: str = _env("NEO4J_USER", "neo4j", doc="Neo4j user")
    neo4j_password: Secret = _env("NEO4J_PASSWORD", Secret("albums-neo4j"), doc="Neo4j password")
    telegram_api_id: int = _env(
        "TELEGRAM_API_ID", 0, doc="Telegram API id (ingestion only; 0 = unset)"
    )
    telegram_api_hash: Secret = _env(
        "TELEGRAM_API_HASH", Secret(""), doc="Telegram API hash (ingestion only)"
    )
    telegram_session: Secret = _env(
        "TELEGRAM_SESSION", Secret(""), doc="Telethon string session (ingestion only)"
    )
    telegram_channels: str = _env(
        "TELEGRAM_CHANNELS", "", doc="channels of `ingest run`: usernames or ids, comma-separated"
    )
    ingest_tenant_id: str = _env(
        "INGEST_TENANT_ID", "default", doc="tenant_id of what this ingest process emits"
    )
    ingest_max_media_bytes: int = _env(
        "INGEST_MAX_MEDIA_BYTES",
        52428800,
        doc="larger media are not downloaded (the item is kept, meta.skipped = too_large)",
    )
    ingest_album_debounce_seconds: float = _env(
        "INGEST_ALBUM_DEBOUNCE_SECONDS",
        3.0,
        doc="quiet time per (channel, grouped_id) before an album is fetched and stored",
    )
    ingest_download_concurrency: int = _env(
        "INGEST_DOWNLOAD_CONCURRENCY", 4, doc="media downloads running at once per ingest process"
    )
    ingest_flood_sleep_threshold: int = _env(
        "INGEST_FLOOD_SLEEP_THRESHOLD",
        60,
        doc="Telethon sleeps through FloodWait up to this many seconds; longer ones we wait out",
    )
    ingest_web_port: int = _env(
        "INGEST_WEB_PORT",
        6067,
        doc="web port of the ingest process: /health and /metrics (0: no web port)",
    )
    sinks: str = _env(
        "SINKS",
        "s3,postgres,qdrant,neo4j",
        doc="comma-separated sinks fed by album.assembled (empty: none, as in the assembler bench)",
    )
    sink_batch_size: int = _env("SINK_BATCH_SIZE", 500, doc="albums per sink write, at most")
    sink_batch_seconds: float = _env(
        "SINK_BATCH_SECONDS", 0.5, doc="longest wait for a sink batch to fill"
    )
    sink_retries: int = _env(
        "SINK_RETRIES", 5, doc="retries of a failed sink write before its albums are parked"
    )
    sink_backoff_seconds: float = _env(
        "SINK_BACKOFF_SECONDS", 2.0, doc="first retry delay; doubles per retry, with jitter"
    )
    store_timeout_seconds: float = _env(
        "STORE_TIMEOUT_SECONDS",
        30.0,
        doc="the longest one store call may take (a sink batch, a lookup): a hung server is a "
        "retriable failure after it",
    )
    sink_backoff_max_seconds: float = _env(
        "SINK_BACKOFF_MAX_SECONDS", 30.0, doc="cap of one retry delay"
    )
    prometheus_url: Url = _env(
        "PROMETHEUS_URL",
        Url("http://127.0.0.1:9090"),
        doc="Prometheus that scrapes the worker (read by `python -m streams report`)",
    )
    lag_interval_seconds: float = _env(
        "LAG_INTERVAL_SECONDS",
        10.0,
        doc="how often the worker measures every stage's consumer-group lag (0: never)",
    )
    stage_stuck_seconds: float = _env(
        "STAGE_STUCK_SECONDS",
        300.0,
        doc="a partition with lag whose group position has not moved this long makes its "
        "stage stuck (/health 503, stage_stuck_partitions)",
    )
    table_batch_size: int = _env(
        "TABLE_BATCH_SIZE",
        50,
        doc="envelopes (each up to 1,000 commands) per batch of the table agents",
    )
    table_batch_seconds: float = _env(
        "TABLE_BATCH_SECONDS",
        0.02,
        doc="longest wait for a table agent's batch to fill (adds to the latency of each stage)",
    )
    state_cache_size: int = _env(
        "STATE_CACHE_SIZE",
        50_000,
        doc="decoded table states kept in memory between batches, per table (0: none)",
    )
    stages: str = _env(
        "STAGES",
        "router,relay,sinks:qdrant,sinks:s3+postgres+neo4j",
        doc="stage groups the worker runs, one child process each: router (with the watcher), "
        "relay (exactly_once only), sinks (every sink), sinks:NAME+NAME (those sinks); "
        "`inline`: all in the worker process; empty: none (`python -m streams stages GROUP`)",
    )
    stage_web_port: int = _env(
        "STAGE_WEB_PORT",
        6068,
        doc="web port of a `stages` process (/health, /health/detailed, /metrics); a worker "
        "picks a free one for each child",
    )
    stage_parent_pid: int = _env(
        "STAGE_PARENT_PID",
        0,
        doc="set by the worker for its stage processes: they stop when it is gone (0: none)",
    )
    gc_threshold: str = _env(
        "GC_THRESHOLD",
        "100000,50,1000",
        doc="Python's gc thresholds in worker processes (gen0,gen1,gen2; measured in the README)",
    )
    log_level: str = _env("LOG_LEVEL", "INFO", doc="log level of workers and tools")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build Settings from `environ` (default: os.environ); keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if f.name in overrides:
                values[f.name] = overrides.pop(f.name)
                continue
            raw = env.get(name)
            values[f.name] = f.default if raw is None else _convert(f.name, name, raw)
        if overrides:
            raise SettingsError(f"unknown settings: {sorted(overrides)}")
        return cls(**values)  # type: ignore[arg-type]  # keys are exactly the fields

    def __post_init__(self) -> None:
        for f in fields(self):  # an override given as a plain str is shown masked too
            value = getattr(self, f.name)
            if f.type == "Url" and not isinstance(value, Url):
                object.__setattr__(self, f.name, Url(value))
        if self.processing_guarantee not in get_args(ProcessingGuarantee):
            raise SettingsError(
                f"PROCESSING_GUARANTEE must be one of {get_args(ProcessingGuarantee)}, "
                f"got {self.processing_guarantee!r}"
            )
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", self.app_id):
            raise SettingsError(f"APP_ID must match [A-Za-z0-9._-]{{1,200}}, got {self.app_id!r}")
        if not 1 <= self.topic_partitions <= 1024:
            raise SettingsError(f"TOPIC_PARTITIONS must be 1..1024, got {self.topic_partitions}")
        if self.album_deadline_seconds <= 0:
            raise SettingsError("ALBUM_DEADLINE_SECONDS must be > 0")
        if self.stream_idle_seconds < 0:
            raise SettingsError("STREAM_IDLE_SECONDS must be >= 0")
        if self.album_state_retention_seconds <= 0:
            raise SettingsError("ALBUM_STATE_RETENTION_SECONDS must be > 0")
        if not 0 < self.web_port < 65536:
            raise SettingsError(f"WEB_PORT must be 1..65535, got {self.web_port}")
        if not self.broker_urls:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is empty")
        for name in ("kafka_security_protocol", "kafka_sasl_mechanism"):
            object.__setattr__(self, name, getattr(self, name).strip().upper())
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.kafka_security_protocol not in protocols:
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {protocols}, "
                f"got {self.kafka_security_protocol!r}"
            )
        mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if self.kafka_sasl_mechanism not in mechanisms:
            raise SettingsError(
                f"KAFKA_SASL_MECHANISM must be one of {mechanisms}, "
                f"got {self.kafka_sasl_mechanism!r}"
            )
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise SettingsError(f"{self.kafka_security_protocol} needs KAFKA_SASL_USERNAME")
        unknown = set(self.sink_names) - set(SINK_NAMES)
        if unknown:
            raise SettingsError(f"SINKS: unknown {sorted(unknown)}; known: {list(SINK_NAMES)}")
        if self.table_batch_size < 1 or self.table_batch_seconds <= 0 or self.state_cache_size < 0:
            raise SettingsError(
                "TABLE_BATCH_SIZE must be >= 1, TABLE_BATCH_SECONDS > 0, STATE_CACHE_SIZE >= 0"
            )
        if self.sink_batch_size < 1 or self.sink_batch_seconds <= 0:
            raise SettingsError("SINK_BATCH_SIZE must be >= 1 and SINK_BATCH_SECONDS > 0")
        if not TENANT_RE.fullmatch(self.ingest_tenant_id):
            raise SettingsError(
                f"INGEST_TENANT_ID must match {TENANT_PATTERN}, got {self.ingest_tenant_id!r}"
            )
        if self.ingest_max_media_bytes < 0 or self.ingest_album_debounce_seconds < 0:
            raise SettingsError("INGEST_MAX_MEDIA_BYTES and INGEST_ALBUM_DEBOUNCE_SECONDS >= 0")
        if self.ingest_download_concurrency < 1:
            raise SettingsError("INGEST_DOWNLOAD_CONCURRENCY must be >= 1")
        if not 0 <= self.ingest_web_port < 65536:
            raise SettingsError(
                f"INGEST_WEB_PORT must be 0..65535 (0: none), got {self.ingest_web_port}"
            )
        if self.sink_retries < 0 or self.sink_backoff_seconds < 0:
            raise SettingsError("SINK_RETRIES and SINK_BACKOFF_SECONDS must be >= 0")
        groups = [g.strip() for g in self.stages.split(",") if g.strip()]
        if groups != ["inline"] and not all(_stage_group(g) for g in groups):
            raise SettingsError(
                "STAGES must list router, relay, sinks or sinks:NAME+NAME (NAME one of "
                f"{', '.join(SINK_NAMES)}), or be `inline` or empty: {self.stages!r}"
            )
        if not 0 <= self.stage_web_port < 65536:
            raise SettingsError(f"STAGE_WEB_PORT must be 0..65535, got {self.stage_web_port}")
        try:
            thresholds = self.gc_thresholds
        except ValueError:
            thresholds = ()
        if len(thresholds) != 3 or min(thresholds) < 1:
            raise SettingsError(
                f"GC_THRESHOLD must be three positive integers, got {self.gc_threshold!r}"
            )

    @property
    def sink_names(self) -> tuple[str, ...]:
        """The sinks SINKS asks for, in SINK_NAMES order."""
        asked = {s.strip() for s in self.sinks.split(",") if s.strip()}
        return tuple(n for n in SINK_NAMES if n in asked) + tuple(sorted(asked - set(SINK_NAMES)))

    @property
    def stages_mode(self) -> Literal["spawn", "inline", "external"]:
        """Where the worker runs its stage groups (STAGES): child processes, itself, nowhere."""
        groups = [g.strip() for g in self.stages.split(",") if g.strip()]
        if groups == ["inline"]:
            return "inline"
        return "spawn" if groups else "external"

    @property
    def stage_groups(self) -> tuple[str, ...]:
        """The stage groups this worker runs; a sinks group only when SINKS names one of its
        sinks."""
        groups = [g.strip() for g in self.stages.split(",") if g.strip()]
        if groups == ["inline"]:
            groups = ["router", "relay", "sinks"]
        return tuple(
            g
            for g in groups
            if g == "router" or (g == "relay" and self.exactly_once) or self.sinks_of(g)
        )

    def sinks_of(self, group: str) -> tuple[str, ...]:
        """The sinks SINKS asks for that a stage group runs (`sinks` or `sinks:a+b`)."""
        if group == "sinks":
            return self.sink_names
        if group.startswith("sinks:"):
            names = set(group.split(":", 1)[1].split("+"))
            return tuple(n for n in self.sink_names if n in names)
        return ()

    @property
    def gc_thresholds(self) -> tuple[int, ...]:
        """GC_THRESHOLD as gc.set_threshold() takes it."""
        return tuple(int(x) for x in self.gc_threshold.split(","))

    @property
    def channel_names(self) -> tuple[str, ...]:
        """TELEGRAM_CHANNELS as a tuple (usernames or ids, as given)."""
        return tuple(c.strip() for c in self.telegram_channels.split(",") if c.strip())

    @property
    def topic_configs(self) -> dict[str, str]:
        """Configs of every topic the pipeline creates: with three replicas or more, a write
        is acknowledged once two hold it (min.insync.replicas 2), so one broker may go while
        nothing acknowledged is lost; fewer replicas keep the broker's default."""
        if self.topic_replication_factor >= 3:
            return {"min.insync.replicas": "2"}
        return {}

    @property
    def broker_urls(self) -> list[str]:
        """Brokers as Faust URLs (`kafka://host:port`)."""
        return [
            f"kafka://{hp.strip()}" for hp in self.kafka_bootstrap_servers.split(",") if hp.strip()
        ]

    @property
    def bootstrap_servers(self) -> list[str]:
        """Brokers as aiokafka's `host:port` list."""
        return [hp.strip() for hp in self.kafka_bootstrap_servers.split(",") if hp.strip()]

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    @property
    def table_dir(self) -> Path:
        """Where Faust keeps this app's RocksDB tables: one folder per APP_ID, since each app
        id has changelogs of its own (a new APP_ID must never read another's local state)."""
        return self.data_dir / "faust" / self.app_id

    @property
    def qdrant_path(self) -> Path:
        """On-disk path of embedded Qdrant (used when QDRANT_URL is empty)."""
        return self.data_dir / "qdrant"

    @classmethod
    def documented(cls) -> dict[str, str]:
        """Environment variable name → documentation, for the README and tooling."""
        return {f.metadata["env"]: f.metadata["doc"] for f in fields(cls)}

    def public(self) -> dict[str, object]:
        """Values safe to show (secrets and URL passwords redacted)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = redact_url(value.get()) if f.name == "database_url" else repr(value)
            elif isinstance(value, Url):
                value = redact_url(value)
            out[f.metadata["env"]] = str(value) if isinstance(value, Path) else value
        return out


def _stage_group(group: str) -> bool:
    if group in ("router", "relay", "sinks"):
        return True
    if not group.startswith("sinks:"):
        return False
    names = group.split(":", 1)[1].split("+")
    return bool(names) and set(names) <= set(SINK_NAMES)


def _convert(attr: str, env_name: str, raw: str) -> object:
    kind = Settings.__dataclass_fields__[attr].type
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "Secret":
            return Secret(raw)
        if kind == "Url":
            return Url(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{env_name}={raw!r} is not a valid {kind}") from exc
    return raw.strip() if kind != "ProcessingGuarantee" else raw.strip().lower()


settings = Settings.from_env()
"""The settings of this process, read once at import."""
