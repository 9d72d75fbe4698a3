"""Assembler benchmarks on one broker, in one run: prints medians and draws a PNG.

- the raw aiokafka passthrough (consume → produce → commit): the Python ceiling of this broker;
- the assembler with sinks off under each guarantee: input events/s, albums/s, ratio to the
  passthrough;
- p50/p99 latency from an album's last input event to its album.assembled record, at 50% of
  the measured at_least_once maximum;
- one worker process against two.

.venv/bin/python scripts/bench_assembler.py --albums 5000 --runs 3
.venv/bin/python scripts/bench_assembler.py --sinks s3,postgres,qdrant,neo4j  # end to end
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from streams.loadtest import (
    BenchResult,
    LatencyResult,
    run_assembler_benchmark,
    run_latency_benchmark,
    run_passthrough,
)
from streams.settings import settings


def _line(r: BenchResult, i: int) -> str:
    line = (
        f"{r.guarantee} x{r.workers} run {i + 1}: {r.events} events / {r.albums} albums in "
        f"{r.seconds:.1f}s = {r.events_per_second:,.0f} events/s "
        f"({r.albums_per_second:,.0f} albums/s), {r.duplicates} duplicates"
    )
    if r.stored_albums_per_second is not None:
        per_sink = ", ".join(f"{s} {r.albums / t:,.1f}" for s, t in r.sink_seconds)
        line += (
            f"; every sink done after {r.stored_seconds:.1f}s = "
            f"{r.stored_albums_per_second:,.1f} albums/s end to end ({per_sink} albums/s), "
            f"{r.parked} parked"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--albums", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--guarantee", action="append", choices=["at_least_once", "exactly_once"], default=None
    )
    parser.add_argument(
        "--sinks", default="", help="sinks to run, e.g. s3,postgres,qdrant,neo4j (default none)"
    )
    parser.add_argument("--no-passthrough", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-scale", action="store_true", help="skip the two-worker runs")
    parser.add_argument("--png", type=Path, default=Path("docs/bench/assembler.png"))
    args = parser.parse_args()
    servers = settings.bootstrap_servers
    sinks = tuple(s for s in args.sinks.split(",") if s)
    guarantees = args.guarantee or ["at_least_once", "exactly_once"]

    ceiling = None
    if not args.no_passthrough and not sinks:
        rates = []
        for i in range(args.runs):
            p = run_passthrough(servers)
            rates.append(p.messages_per_second)
            print(f"passthrough run {i + 1}: {p.messages_per_second:,.0f} msgs/s", flush=True)
        ceiling = statistics.median(rates)
        print(f"passthrough: median {ceiling:,.0f} msgs/s", flush=True)

    medians: dict[str, float] = {}
    timelines: dict[str, tuple[int, ...]] = {}
    for g in guarantees:
        results = []
        for i in range(args.runs):
            r = run_assembler_benchmark(
                servers, args.albums, g, args.partitions, seed=i, sinks=sinks
            )
            results.append(r)
            print(_line(r, i), flush=True)
        medians[g] = statistics.median(r.events_per_second for r in results)
        timelines[g] = results[len(results) // 2].timeline
        albums_s = statistics.median(r.albums_per_second for r in results)
        ratio = f", {medians[g] / ceiling:.3f}x the passthrough" if ceiling else ""
        print(
            f"{g}: median {medians[g]:,.0f} input events/s, {albums_s:,.0f} albums/s{ratio}",
            flush=True,
        )
        if sinks:
            stored = [r.stored_albums_per_second for r in results if r.stored_albums_per_second]
            if stored:
                print(f"{g}: median {statistics.median(stored):,.1f} albums/s end to end")
            for name in sinks:
                per = [r.albums / t for r in results for s, t in r.sink_seconds if s == name]
                if per:
                    print(f"{g}: sink {name} median {statistics.median(per):,.1f} albums/s")
    if len(medians) == 2:
        ratio = medians["exactly_once"] / medians["at_least_once"]
        print(f"exactly_once / at_least_once = {ratio:.2f}", flush=True)

    if not args.no_scale and not sinks and "at_least_once" in medians:
        two = []
        for i in range(args.runs):
            r = run_assembler_benchmark(
                servers, args.albums, "at_least_once", args.partitions, seed=i, workers=2
            )
            two.append(r.events_per_second)
            print(_line(r, i), flush=True)
            timelines["at_least_once x2"] = r.timeline
        print(
            f"two workers: median {statistics.median(two):,.0f} input events/s = "
            f"{statistics.median(two) / medians['at_least_once']:.2f}x one worker",
            flush=True,
        )

    latencies: dict[str, LatencyResult] = {}
    if not args.no_latency and not sinks and "at_least_once" in medians:
        rate = medians["at_least_once"] / 2
        for g in guarantees:
            lat = run_latency_benchmark(servers, g, rate, albums=max(500, int(rate * 20 / 4.7)))
            latencies[g] = lat
            p50, p90, p99 = (lat.percentile(q) * 1000 for q in (50, 90, 99))
            print(
                f"{g} latency at {rate:,.0f} events/s (50%): p50 {p50:.0f} ms, p90 {p90:.0f} ms, "
                f"p99 {p99:.0f} ms, max {lat.latencies[-1] * 1000:.0f} ms "
                f"over {len(lat.latencies)} albums",
                flush=True,
            )
    if not sinks:
        _plot(args.png, timelines, latencies)
        print(f"wrote {args.png}")


def _plot(
    png: Path, timelines: dict[str, tuple[int, ...]], latencies: dict[str, LatencyResult]
) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, counts in timelines.items():
        left.plot(range(len(counts)), counts, label=name)
    left.set_title("album.assembled per second (backlog run)")
    left.set_xlabel("seconds since the worker was ready")
    left.set_ylabel("albums/s")
    left.legend()
    qs = (50, 90, 99)
    width = 0.8 / max(1, len(latencies))
    for i, (name, lat) in enumerate(latencies.items()):
        right.bar(
            [j + i * width for j in range(len(qs))],
            [lat.percentile(q) * 1000 for q in qs],
            width=width,
            label=f"{name} at {lat.rate:,.0f} ev/s",
        )
    right.set_xticks([j + width * (len(latencies) - 1) / 2 for j in range(len(qs))])
    right.set_xticklabels([f"p{q}" for q in qs])
    right.set_ylabel("ms, last input event → album.assembled")
    right.set_title("latency at 50% of the maximum rate")
    if latencies:
        right.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
