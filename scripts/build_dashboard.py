"""Build the Grafana dashboard of the album pipeline with the Grafana Foundation SDK.

The panels are declared below as data (row, title, queries, unit, width); the SDK's builders
(`grafana_foundation_sdk`, the release generated for Grafana 11.6, whose dashboard JSON Grafana
12 reads as well) turn them into the dashboard JSON model and lay them out on Grafana's 24-column
grid. Running the script writes that model to compose/grafana/dashboards/album_pipeline.json,
the file the compose Grafana provisions (compose/grafana/provisioning/dashboards/):

    .venv/bin/python scripts/build_dashboard.py           # (re)write the JSON file
    .venv/bin/python scripts/build_dashboard.py --check   # exit 1 when the file is stale

The output is deterministic (sorted keys, two-space indent, a trailing newline), so the committed
file changes only when a panel does. Every panel and target uses the one Prometheus datasource,
uid `prometheus` (compose/grafana/provisioning/datasources/prometheus.yml).

`build()` returns the JSON model (tests/unit/test_dashboard.py checks it); `panel_queries()` of
streams/panels.py lists every target of a model. The seed's eight album panels keep their
titles; streams/panels.py also holds the key panels' queries for `python -m streams report`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "compose" / "grafana" / "dashboards" / "album_pipeline.json"

TITLE = "Album Pipeline"
UID = "album-pipeline"
TAGS = ["album-pipeline"]
REFRESH = "10s"
TIME_FROM = "now-1h"
DATASOURCE_TYPE = "prometheus"
DATASOURCE_UID = "prometheus"

GRID_WIDTH = 24
PANEL_HEIGHT = 8
WORKER_JOBS = 'job=~"album-pipeline|ingest"'

Kind = Literal["timeseries", "stat", "table"]


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    #: Grafana's legend template (`{{label}}` is the series' label value)
    legend: str
    #: one value at the end of the range instead of a series over it
    instant: bool = False


@dataclass(frozen=True, slots=True)
class PanelSpec:
    title: str
    queries: tuple[Query, ...]
    unit: str
    kind: Kind = "timeseries"
    width: int = 8
    description: str = ""
    #: (series name, unit) of series whose unit is not the panel's
    series_units: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...]


def rate(metric: str, by: str = "") -> str:
    """`sum [by (labels)] (rate(metric[$__rate_interval]))`."""
    inner = f"rate({metric}[$__rate_interval])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: float, metric: str, by: str = "le") -> str:
    """The q-quantile of a histogram (`metric` without `_bucket`) over `$__rate_interval`."""
    return f"histogram_quantile({q:.2f}, sum by ({by}) (rate({metric}_bucket[$__rate_interval])))"


def p95_p50(metric: str) -> tuple[Query, ...]:
    return (Query(quantile(0.95, metric), "p95"), Query(quantile(0.50, metric), "p50"))


ITEMS_COUNT_DESCRIPTION = (
    "Mean items per assembled album, by status: rate of album_items_count_sum over rate of "
    "album_items_count_count. Replaces the seed's album_items_count_gauge{album_id}, whose "
    "album_id label made one series per album (unbounded cardinality), with the "
    "album_items_count histogram labelled by status only."
)

ROWS: tuple[RowSpec, ...] = (
    RowSpec(
        "Albums",
        (
            PanelSpec(
                "Albums Parsed Rate",
                (Query(rate("albums_parsed_total", "status"), "{{status}}"),),
                "ops",
            ),
            PanelSpec(
                "Albums Assembled Rate",
                (Query(rate("albums_assembled_total", "status"), "{{status}}"),),
                "ops",
            ),
            PanelSpec("Album Assembly Lag (p95, p50)", p95_p50("album_assembly_lag_seconds"), "s"),
            PanelSpec(
                "Albums in Progress", (Query("sum(albums_in_progress)", "in progress"),), "short"
            ),
            PanelSpec(
                "Album Items Count",
                (
                    Query(
                        f"{rate('album_items_count_sum', 'status')} / "
                        f"{rate('album_items_count_count', 'status')}",
                        "{{status}}",
                    ),
                ),
                "short",
                description=ITEMS_COUNT_DESCRIPTION,
            ),
            PanelSpec(
                "Album Aggregation Duration (p95)",
                (Query(quantile(0.95, "album_aggregation_duration_ms"), "p95"),),
                "ms",
            ),
            PanelSpec(
                "Album Vision Summary Size", p95_p50("album_vision_summary_size_bytes"), "bytes"
            ),
            PanelSpec(
                "Active Alerts",
                (
                    Query(
                        'sum by (alertname, severity) (ALERTS{alertstate="firing"})',
                        "{{alertname}} {{severity}}",
                        instant=True,
                    ),
                ),
                "short",
                kind="table",
                width=16,
                description="Alerts firing now (compose/prometheus/alerts.yml).",
            ),
        ),
    ),
    RowSpec(
        "Lag",
        (
            PanelSpec(
                "Consumer Lag by Stage",
                (Query("max by (stage, topic) (kafka_consumergroup_lag)", "{{stage}} {{topic}}"),),
                "short",
            ),
            PanelSpec(
                "Stage Throughput",
                (Query(rate("stage_records_total", "stage"), "{{stage}}"),),
                "ops",
            ),
            PanelSpec(
                "Lag Measured (seconds ago)",
                (
                    Query(
                        "time() - max(kafka_consumergroup_lag_updated_timestamp_seconds)",
                        "seconds ago",
                    ),
                ),
                "s",
                kind="stat",
                description="Age of the newest consumer-lag measurement of the worker.",
            ),
        ),
    ),
    RowSpec(
        "DLQ",
        (
            PanelSpec(
                "Dead Letters by Stage",
                (Query(rate("dlq_events_total", "stage, error_type"), "{{stage}} {{error_type}}"),),
                "ops",
            ),
            PanelSpec(
                "Dead Letters in Range",
                (Query("sum(increase(dlq_events_total[$__range]))", "dead letters", instant=True),),
                "short",
                kind="stat",
            ),
            PanelSpec(
                "Ingest Dead Letters",
                (Query(rate("ingest_dlq_total", "error_type"), "{{error_type}}"),),
                "ops",
            ),
        ),
    ),
    RowSpec(
        "Sinks",
        (
            PanelSpec(
                "Sink Albums",
                (Query(rate("sink_albums_total", "sink, outcome"), "{{sink}} {{outcome}}"),),
                "ops",
                width=12,
            ),
            PanelSpec(
                "Sink Retries",
                (Query(rate("sink_retries_total", "sink"), "{{sink}}"),),
                "ops",
                width=12,
            ),
            PanelSpec(
                "Sink Batch Duration (p95)",
                (Query(quantile(0.95, "sink_batch_duration_seconds", "sink, le"), "{{sink}}"),),
                "s",
                width=12,
            ),
            PanelSpec(
                "Paused Partitions",
                (Query("sum by (stage) (stage_paused_partitions)", "{{stage}}"),),
                "short",
                width=12,
            ),
        ),
    ),
    RowSpec(
        "Ingest",
        (
            PanelSpec(
                "Telegram Messages",
                (Query(rate("ingest_messages_total", "kind"), "{{kind}}"),),
                "ops",
            ),
            PanelSpec(
                "Ingested Albums",
                (Query(rate("ingest_albums_total", "outcome"), "{{outcome}}"),),
                "ops",
            ),
            PanelSpec(
                "Outbox",
                (
                    Query(rate("ingest_outbox_published_total"), "published/s"),
                    Query("sum(ingest_outbox_backlog)", "backlog"),
                ),
                "short",
                description="albums.parsed events published per second, and the outbox rows "
                "not yet published.",
                series_units=(("published/s", "ops"),),
            ),
            PanelSpec(
                "Channel Lag",
                (Query("sum by (channel) (ingest_channel_lag_messages)", "{{channel}}"),),
                "short",
                width=12,
            ),
            PanelSpec(
                "Media Downloaded",
                (Query(rate("ingest_media_bytes_total"), "downloaded"),),
                "Bps",
                width=12,
            ),
        ),
    ),
    RowSpec(
        "Worker",
        (
            PanelSpec(
                "Up", (Query(f"up{{{WORKER_JOBS}}}", "{{job}} {{instance}}"),), "short", width=12
            ),
            PanelSpec(
                "Resident Memory",
                (Query(f"process_resident_memory_bytes{{{WORKER_JOBS}}}", "{{job}} {{instance}}"),),
                "bytes",
                width=12,
            ),
            PanelSpec(
                "CPU",
                (
                    Query(
                        f"rate(process_cpu_seconds_total{{{WORKER_JOBS}}}[$__rate_interval])",
                        "{{job}} {{instance}}",
                    ),
                ),
                "short",
                width=12,
                description="CPU seconds per second (1 = one core busy).",
            ),
            PanelSpec(
                "Table Recovery",
                (
                    Query("max(table_recovery_active)", "recovering"),
                    Query("sum(table_recovery_remaining_records)", "remaining records"),
                ),
                "short",
                width=12,
                description="1 while a worker restores its tables from their changelogs, and "
                "the changelog records left to restore.",
            ),
        ),
    ),
)


def datasource() -> DataSourceRef:
    return DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


def target(query: Query, ref_id: str, *, table_format: bool) -> prometheus.Dataquery:
    builder = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(datasource())
        .expr(query.expr)
        .legend_format(query.legend)
    )
    if table_format:
        builder = builder.format(PromQueryFormat.TABLE)
    return builder.instant() if query.instant else builder.range()


PanelBuilder = timeseries.Panel | stat.Panel | table.Panel


def panel(spec: PanelSpec, panel_id: int) -> PanelBuilder:
    builder: PanelBuilder
    if spec.kind == "timeseries":
        builder = (
            timeseries.Panel()
            .legend(
                common_builder.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common_builder.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
    elif spec.kind == "stat":
        builder = (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.AREA)
            .color_mode(common.BigValueColorMode.VALUE)
            .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    else:
        builder = (
            table.Panel()
            .show_header(True)
            .with_transformation(
                DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
            )
        )
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .datasource(datasource())
        .unit(spec.unit)
        .span(spec.width)
        .height(PANEL_HEIGHT)
    )
    if spec.description:
        builder = builder.description(spec.description)
    for series, unit in spec.series_units:
        builder = builder.override_by_name(series, [DynamicConfigValue(id_val="unit", value=unit)])
    for n, query in enumerate(spec.queries):
        builder = builder.with_target(
            target(query, chr(ord("A") + n), table_format=spec.kind == "table")
        )
    return builder


def build() -> dict[str, Any]:
    """The dashboard's JSON model (a fresh dict on every call)."""
    dash = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .tags(TAGS)
        .refresh(REFRESH)
        .time(TIME_FROM, "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
    )
    panel_id = 0
    for row in ROWS:
        panel_id += 1
        dash = dash.with_row(dashboard_builder.Row(row.title).id(panel_id).datasource(datasource()))
        for spec in row.panels:
            panel_id += 1
            dash = dash.with_panel(panel(spec, panel_id))
    model: dict[str, Any] = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    check_layout(model)
    return model


def grid_boxes(dashboard: dict[str, Any]) -> list[tuple[str, int, int, int, int]]:
    """(title, x, y, w, h) of every panel and row, panels of collapsed rows included."""
    boxes: list[tuple[str, int, int, int, int]] = []
    for item in dashboard.get("panels", []):
        for p in (item, *item.get("panels", [])):
            pos = p["gridPos"]
            boxes.append((p.get("title", ""), pos["x"], pos["y"], pos["w"], pos["h"]))
    return boxes


def check_layout(dashboard: dict[str, Any]) -> None:
    """Raise ValueError when a panel leaves the 24-column grid or overlaps another."""
    boxes = grid_boxes(dashboard)
    for title, x, _y, w, h in boxes:
        if x < 0 or w <= 0 or h <= 0 or x + w > GRID_WIDTH:
            raise ValueError(f"panel {title!r} is off the {GRID_WIDTH}-column grid")
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1 :]:
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                raise ValueError(f"panels {a!r} and {b!r} overlap")


def render(dashboard: dict[str, Any]) -> str:
    """The file's text: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the file differs from what would be written",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    text = render(build())
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != text:
            print(
                f"{output} is stale: run .venv/bin/python scripts/build_dashboard.py",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
