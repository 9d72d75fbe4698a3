"""The key panels of the Grafana dashboard, as data: what `python -m streams report` renders.

The dashboard (compose/grafana/dashboards/album_pipeline.json, built by
scripts/build_dashboard.py) has panels of these titles with these very queries; a unit test
holds the two together. Queries use Grafana's `$__rate_interval`, substituted by the report as
Grafana would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Target:
    expr: str
    #: Grafana's legend template: `{{label}}` is replaced by the series' label value
    legend: str


@dataclass(frozen=True, slots=True)
class Panel:
    #: file stem of the report's PNG
    name: str
    #: the dashboard panel's title
    title: str
    targets: tuple[Target, ...]
    #: axis label
    unit: str


def _quantile(q: float, metric: str, legend: str) -> Target:
    return Target(
        f"histogram_quantile({q:.2f}, sum by (le) (rate({metric}_bucket[$__rate_interval])))",
        legend,
    )


KEY_PANELS = (
    Panel(
        "parsed",
        "Albums Parsed Rate",
        (Target("sum by (status) (rate(albums_parsed_total[$__rate_interval]))", "{{status}}"),),
        "albums/s",
    ),
    Panel(
        "assembled",
        "Albums Assembled Rate",
        (Target("sum by (status) (rate(albums_assembled_total[$__rate_interval]))", "{{status}}"),),
        "albums/s",
    ),
    Panel(
        "assembly_lag",
        "Album Assembly Lag (p95, p50)",
        (
            _quantile(0.95, "album_assembly_lag_seconds", "p95"),
            _quantile(0.50, "album_assembly_lag_seconds", "p50"),
        ),
        "seconds",
    ),
    Panel(
        "in_progress",
        "Albums in Progress",
        (Target("sum(albums_in_progress)", "in progress"),),
        "albums",
    ),
    Panel(
        "consumer_lag",
        "Consumer Lag by Stage",
        (Target("max by (stage, topic) (kafka_consumergroup_lag)", "{{stage}} {{topic}}"),),
        "records",
    ),
    Panel(
        "dlq",
        "Dead Letters by Stage",
        (
            Target(
                "sum by (stage, error_type) (rate(dlq_events_total[$__rate_interval]))",
                "{{stage}} {{error_type}}",
            ),
        ),
        "records/s",
    ),
    Panel(
        "sinks",
        "Sink Albums",
        (
            Target(
                "sum by (sink, outcome) (rate(sink_albums_total[$__rate_interval]))",
                "{{sink}} {{outcome}}",
            ),
        ),
        "albums/s",
    ),
)


def rate_interval(step: float, scrape: float) -> float:
    """Grafana's `$__rate_interval`: max(step + scrape interval, 4 x scrape interval)."""
    return max(step + scrape, 4 * scrape)


def substitute(expr: str, *, step: float, scrape: float, range_seconds: float) -> str:
    """Grafana's variables in `expr`, replaced as Grafana replaces them for Prometheus."""
    values = {
        "$__rate_interval": f"{int(rate_interval(step, scrape) * 1000)}ms",
        "$__interval_ms": str(int(step * 1000)),
        "$__interval": f"{int(step * 1000)}ms",
        "$__range_ms": str(int(range_seconds * 1000)),
        "$__range_s": str(int(range_seconds)),
        "$__range": f"{int(range_seconds)}s",
    }
    for name, value in values.items():  # `$__interval_ms` before `$__interval`
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    return expr


def legend(template: str, labels: dict[str, str]) -> str:
    """A series' legend as Grafana writes it (a label the series lacks is left blank)."""
    out = _TEMPLATE.sub(lambda m: labels.get(m.group(1).strip(), ""), template)
    return " ".join(out.split()) or "value"


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(row title, panel title, expr) of every target of a dashboard JSON model, in order.

    Handles panels inside collapsed rows (a row's `panels`) and top-level panels, which belong
    to the row above them ('' before the first row)."""
    out: list[tuple[str, str, str]] = []
    row = ""
    for item in dashboard.get("panels", []):
        if item.get("type") == "row":
            row = item.get("title", "")
            nested = item.get("panels", [])
        else:
            nested = [item]
        for p in nested:
            for t in p.get("targets", []):
                out.append((row, p.get("title", ""), t.get("expr", "")))
    return out
