"""`python -m streams report`: a run report for people who would rather look than read.

It runs a load test against the running worker (albums from the generator, a progress bar while
they are sent and another while they come out assembled), or reads the last minutes when
`--albums 0`. Then it asks the Prometheus that scrapes the worker (PROMETHEUS_URL) for the
dashboard's key panels over the run (`query_range`, the panels' own queries from
streams/panels.py), draws each to a PNG with matplotlib, and writes `summary.md` beside them:
what went in, what came out, lag, dead letters, sinks and the alerts that fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from tqdm import tqdm

from streams.kafka_io import produce, topic_partitions
from streams.kafka_security import kafka_options
from streams.panels import KEY_PANELS, Panel, legend, substitute
from streams.settings import Settings

Series = list[tuple[str, list[tuple[float, float]]]]


class PrometheusError(RuntimeError):
    """Prometheus did not answer, or refused a query."""


@dataclass
class Prometheus:
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **params: str) -> Any:
        try:
            async with self.session.get(f"{self.url}{path}", params=params) as r:
                body = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PrometheusError(f"{self.url} does not answer: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{params.get('query', path)}: {body.get('error')}")
        return body["data"]

    async def range(self, expr: str, start: float, end: float, step: float) -> Series:
        data = await self.get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )
        return [
            (orjson.dumps(s["metric"]).decode(), [(float(t), float(v)) for t, v in s["values"]])
            for s in data["result"]
        ]

    async def instant(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        data = await self.get("/api/v1/query", query=expr, time=str(at))
        return [(dict(s["metric"]), float(s["value"][1])) for s in data["result"]]


@dataclass
class Load:
    """What the report's load test sent and saw come out."""

    albums: int
    records: int
    rate: float
    assembled: int = 0
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Report:
    out: Path
    start: float
    end: float
    load: Load | None
    pngs: dict[str, Path] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


async def run_load(
    cfg: Settings, albums: int, rate: float, wait_seconds: float, *, progress: bool = True
) -> Load:
    """Send `albums` generated albums at `rate` records/s; wait until they are assembled."""
    from streams.generator import GeneratorConfig, generate

    first = int(time.time() * 1000)  # album ids of this run only
    batch = generate(
        GeneratorConfig(
            albums=albums,
            seed=first % 10_000,
            tenants=("report",),
            first_album_id=first,
            duplicate_share=0.02,
            malformed_share=0.01,
        )
    )
    ids = set(batch.albums)
    load = Load(albums=albums, records=len(batch.records), rate=rate, started=time.time())
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=cfg.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = f"{cfg.topic_prefix}album.assembled"
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        if tps:
            await consumer.seek_to_end(*tps)
            for tp in tps:  # the end now, before anything of this run
                await consumer.position(tp)
        sent_bar = tqdm(total=len(batch.records), desc="sent", unit="rec", disable=not progress)
        out_bar = tqdm(total=albums, desc="assembled", unit="album", disable=not progress)
        seen: set[int] = set()

        async def watch() -> None:
            while len(seen) < len(ids):
                got = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in got.values():
                    for r in records:
                        album_id = orjson.loads(r.value)["album_id"] if r.value else None
                        if album_id in ids and album_id not in seen:
                            seen.add(album_id)
                            out_bar.update(1)

        watching = asyncio.ensure_future(watch())
        await produce(
            cfg.bootstrap_servers,
            batch.records,
            rate=rate,
            topic_prefix=cfg.topic_prefix,
            on_sent=lambda n: _advance(sent_bar, n),
        )
        sent_bar.close()
        with contextlib.suppress(TimeoutError):  # the report shows how many came out
            await asyncio.wait_for(watching, timeout=wait_seconds)
        out_bar.close()
        load.assembled = len(seen)
    finally:
        await consumer.stop()
    load.finished = time.time()
    return load


def _advance(bar: tqdm[Any], n: int) -> None:
    bar.update(n)


async def build_report(
    cfg: Settings,
    out: Path,
    *,
    start: float,
    end: float,
    load: Load | None,
    scrape_seconds: float = 5.0,
) -> Report:
    """Fetch the key panels over [start, end], draw them, write summary.md."""
    window = max(1.0, end - start)
    step = max(1.0, round(window / 240))
    report = Report(out=out, start=start, end=end, load=load)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        prom = Prometheus(cfg.prometheus_url.rstrip("/"), session)
        panels: dict[str, Series] = {}
        for panel in KEY_PANELS:
            series: Series = []
            for target in panel.targets:
                expr = substitute(
                    target.expr, step=step, scrape=scrape_seconds, range_seconds=window
                )
                for labels, values in await prom.range(expr, start, end, step):
                    series.append((legend(target.legend, orjson.loads(labels)), values))
            panels[panel.name] = series
        report.lines = await summary_lines(prom, start, end, load)
    await asyncio.to_thread(write, report, panels)
    return report


def write(report: Report, panels: dict[str, Series]) -> None:
    report.out.mkdir(parents=True, exist_ok=True)
    report.pngs = draw(panels, report.out)
    (report.out / "summary.md").write_text(markdown(report))


def draw(panels: dict[str, Series], out: Path) -> dict[str, Path]:
    """One PNG per key panel, and overview.png with all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    by_name = {p.name: p for p in KEY_PANELS}
    pngs: dict[str, Path] = {}

    def plot(ax: Any, panel: Panel, series: Series) -> None:
        for label, values in sorted(series):
            points = [(datetime.fromtimestamp(t, UTC), v) for t, v in values if not math.isnan(v)]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=label, lw=1.4)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)

    for name, series in panels.items():
        fig, ax = plt.subplots(figsize=(8, 3.2))
        plot(ax, by_name[name], series)
        fig.tight_layout()
        pngs[name] = out / f"{name}.png"
        fig.savefig(pngs[name], dpi=110)
        plt.close(fig)
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.9 * rows))
    flat = list(axes.flat)
    for ax, (name, series) in zip(flat, panels.items(), strict=False):
        plot(ax, by_name[name], series)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Album pipeline run", fontsize=12)
    fig.tight_layout()
    pngs["overview"] = out / "overview.png"
    fig.savefig(pngs["overview"], dpi=100)
    plt.close(fig)
    return pngs


async def summary_lines(prom: Prometheus, start: float, end: float, load: Load | None) -> list[str]:
    w = f"{max(1, int(end - start))}s"

    async def by(expr: str, *labels: str) -> dict[str, float]:
        found = await prom.instant(expr, end)
        return {" ".join(m.get(k, "") for k in labels) or "all": v for m, v in found}

    def fmt(values: dict[str, float]) -> str:
        shown = {k: round(v) for k, v in sorted(values.items()) if round(v)}
        return ", ".join(f"{k} {v:,}" for k, v in shown.items()) or "none"

    lines = []
    if load is not None:
        took = load.finished - load.started
        lines.append(
            f"| load | {load.albums:,} albums in {load.records:,} records at "
            f"{load.rate:g} records/s; {load.assembled:,} came out assembled in {took:.0f} s |"
        )

    def counted(metric: str, *labels: str) -> str:
        # exact: the counters at the end less at the start (a series new since counts from 0);
        # increase() would extrapolate to the window's edges
        by_labels = ", ".join(labels)
        now = f"sum by ({by_labels}) ({metric})"
        then = f"sum by ({by_labels}) ({metric} offset {w})"
        return f"clamp_min({now} - ({then} or {now} * 0), 0)"

    parsed = await by(counted("albums_parsed_total", "status"), "status")
    assembled = await by(counted("albums_assembled_total", "status"), "status")
    lines.append(f"| albums.parsed | {fmt(parsed)} |")
    lines.append(f"| album.assembled | {fmt(assembled)} |")
    peak = await by(
        f"max_over_time(sum(rate(albums_assembled_total[30s]))[{w}:5s])",
    )
    lines.append(f"| peak assembled rate | {peak.get('all', 0.0):.1f} albums/s (30 s window) |")
    quantiles = []
    for q in (0.5, 0.95, 0.99):
        buckets = f"increase(album_assembly_lag_seconds_bucket[{w}])"
        found = await by(f"histogram_quantile({q}, sum by (le) ({buckets}))")
        value = found.get("all", math.nan)
        quantiles.append(f"p{int(q * 100)} {value:.2f} s" if not math.isnan(value) else "n/a")
    lines.append(f"| assembly lag (event to album.assembled) | {', '.join(quantiles)} |")
    lag = await by(f"max by (stage) (max_over_time(kafka_consumergroup_lag[{w}]))", "stage")
    lines.append(f"| highest consumer lag (records) | {fmt(lag)} |")
    dlq = await by(counted("dlq_events_total", "stage", "error_type"), "stage", "error_type")
    lines.append(f"| dead letters | {fmt(dlq)} |")
    sinks = await by(counted("sink_albums_total", "sink", "outcome"), "sink", "outcome")
    lines.append(f"| sinks | {fmt(sinks)} |")
    alerts = await by(
        f'max by (alertname) (max_over_time(ALERTS{{alertstate="firing"}}[{w}]))', "alertname"
    )
    lines.append(f"| alerts that fired | {', '.join(sorted(alerts)) or 'none'} |")
    return lines


def markdown(report: Report) -> str:
    start = datetime.fromtimestamp(report.start, UTC).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(report.end, UTC).strftime("%H:%M:%S")
    out = [
        "# Album pipeline run report",
        "",
        f"{start} to {end} UTC ({report.end - report.start:.0f} s), from Prometheus.",
        "",
        "| | |",
        "|---|---|",
        *report.lines,
        "",
    ]
    for panel in KEY_PANELS:
        if panel.name in report.pngs:
            out += [f"## {panel.title}", "", f"![{panel.title}]({panel.name}.png)", ""]
    return "\n".join(out)


async def report_command(
    cfg: Settings,
    *,
    albums: int,
    rate: float,
    since: float,
    out: Path,
    wait_seconds: float,
    scrape_seconds: float,
    echo: Callable[[str], None],
) -> Report:
    load = None
    if albums > 0:
        load = await run_load(cfg, albums, rate, wait_seconds)
        # two scrapes more, so the run's last seconds are in Prometheus
        await asyncio.sleep(2 * scrape_seconds + 1)
        start, end = load.started - 10, time.time()
    else:
        end = time.time()
        start = end - since
    try:
        report = await build_report(
            cfg, out, start=start, end=end, load=load, scrape_seconds=scrape_seconds
        )
    except PrometheusError as exc:
        raise SystemExit(f"report: {exc} (PROMETHEUS_URL={cfg.prometheus_url})") from exc
    echo(f"report: {out / 'summary.md'}")
    for line in report.lines:
        echo("  " + line.strip("| ").replace(" | ", ": "))
    return report
