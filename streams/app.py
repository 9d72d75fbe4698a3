"""The one faust.App of the pipeline; agents, tables and views register themselves by import."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import faust
from faust.app.base import SCAN_IGNORE

from streams import logfilter
from streams.faust_consumer import SafeConsumer, SafeTransport
from streams.kafka_security import faust_credentials
from streams.settings import settings
from streams.topics import ALBUM_EVENTS, POST_EVENTS

# The topics Faust's agents read: written by our producers only, without transactions or
# compaction, so no offset lacks its record and commits on them may never skip one.
SafeConsumer.dense_topics = {ALBUM_EVENTS, POST_EVENTS}


#: tool modules of the `streams` package: commands import them when they run; the worker
#: (Faust scans the whole `origin` package for decorators) never imports them
TOOLS = ("streams.generator", "streams.loadtest", "streams.showcase", "streams.ingest_bench")


class App(faust.App):
    """faust.App whose consumer never drops an unprocessed record (streams/faust_consumer.py)."""

    def _new_transport(self) -> Any:
        return SafeTransport(self.conf.broker_consumer, self)

    def on_webserver_init(self, web: Any) -> None:
        # every path but /health and /metrics needs the bearer token (streams/webauth.py)
        from streams import webauth

        webauth.protect(web.web_app)
        where = "WEB_AUTH_TOKEN" if settings.web_auth_token else str(webauth.token_path())
        log.info("web: every path but /health and /metrics needs the bearer token (%s)", where)

    def discover(
        self,
        *extra_modules: str,
        categories: Iterable[str] | None = None,
        ignore: Iterable[Any] = SCAN_IGNORE,
    ) -> None:
        super().discover(*extra_modules, categories=categories, ignore=[*ignore, *TOOLS])


log = logging.getLogger(__name__)

# Faust creates its datadir but not the parents of it.
settings.table_dir.parent.mkdir(parents=True, exist_ok=True)

# aiokafka repeats one error thousands of times a second while a broker is away
logfilter.install()

app = App(
    settings.app_id,
    # Faust reads its settings from unprefixed environment variables too, and some of ours
    # share its names: PROCESSING_GUARANTEE=exactly_once silently switched Faust's own
    # transactions on (and the environment wins over the arguments below). Faust's own knobs
    # stay reachable as FAUST_<NAME>; everything of ours comes from streams.settings.
    env_prefix="FAUST_",
    broker=settings.broker_urls,
    broker_credentials=faust_credentials(),
    # The store must be set on the app: a per-table `store=` is silently ignored by Faust.
    store="rocksdb://",
    datadir=str(settings.table_dir),
    # Faust always runs at-least-once: its exactly_once loses events when a worker is killed.
    # PROCESSING_GUARANTEE=exactly_once adds the transactional relay of agents/relay.py.
    processing_guarantee="at_least_once",
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication_factor,
    # a standby of each table partition on another worker (when there is one): a failed
    # worker's partitions resume from a warm copy
    table_standby_replicas=settings.table_standby_replicas,
    web_port=settings.web_port,
    web_bind=settings.web_bind,
    # canonical URL other workers of the group forward table-view requests to
    web_host=settings.web_host,
    consumer_auto_offset_reset="earliest",
    # Faust's producer carries no table write any more (agents/table_store.py), only what
    # Faust itself sends; a 20 ms linger batches it
    producer_linger=0.02,
    # each event the agents read is an envelope of up to 1,000 commands (agents/envelopes.py):
    # Faust's defaults (polls of 1,000 records, 4,096 buffered per stream) would hold gigabytes
    broker_max_poll_records=100,
    stream_buffer_maxsize=32,
    # a killed worker's partitions move after this; heartbeats go 10x as often
    broker_session_timeout=settings.consumer_session_timeout_seconds,
    broker_heartbeat_interval=max(1.0, settings.consumer_session_timeout_seconds / 10),
    # the group's leader assigns what its metadata shows: refreshed every 30 s, not every 5
    # minutes, so a topic or partition it has not seen yet is not left out for long
    consumer_metadata_max_age_ms=30_000,
    # discards local tables after an unclean shutdown (see streams/worker.py)
    Worker="streams.worker:Worker",
    # restores changelogs in bulk before Faust's per-event recovery (streams/recovery.py)
    TableManager="streams.recovery:TableManager",
    origin="streams",
    autodiscover=["streams.views", "streams.commands", "tables", "agents"],
)

# The consumer fixes of streams/faust_consumer.py assume our internal topics carry no Faust
# transactions; PROCESSING_GUARANTEE=exactly_once is the relay's job (agents/relay.py).
if str(app.conf.processing_guarantee.value) != "at_least_once":
    raise RuntimeError(
        "FAUST_PROCESSING_GUARANTEE must stay at_least_once: set PROCESSING_GUARANTEE for "
        "exactly-once publication of album.assembled"
    )
