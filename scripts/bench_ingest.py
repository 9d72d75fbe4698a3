"""`ingest replay` throughput on the local stack: messages/s, albums/s, media MB/s (medians).

.venv/bin/python scripts/bench_ingest.py --albums 300 --runs 3 --png docs/bench/ingest_replay.png
(or: make bench-ingest). Each run replays a fresh recording twice: first (every album new:
rows, media uploads, outbox, Kafka) and repeat (every album unchanged).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from streams.ingest_bench import ReplayRun, run_ingest_benchmark
from streams.settings import settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--albums", type=int, default=300)
    parser.add_argument("--parts", type=int, default=3)
    parser.add_argument("--media-kb", type=int, default=64, help="size of each part's media")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path("docs/bench/ingest_replay.png"))
    args = parser.parse_args()
    runs: list[ReplayRun] = []
    for i in range(args.runs):
        got = asyncio.run(
            run_ingest_benchmark(
                settings, albums=args.albums, parts=args.parts, media_size=args.media_kb * 1024
            )
        )
        for r in got:
            print(
                f"run {i + 1} {r.phase:>6}: {r.messages} messages, {r.albums} albums, "
                f"{r.media_bytes / 1e6:.1f} MB in {r.seconds:.2f}s = "
                f"{r.messages_per_second:,.0f} msg/s, {r.albums_per_second:,.1f} albums/s, "
                f"{r.media_mb_per_second:.1f} MB/s"
            )
        runs += got
    medians: dict[str, dict[str, float]] = {}
    for phase in ("first", "repeat"):
        mine = [r for r in runs if r.phase == phase]
        medians[phase] = {
            "msg/s": statistics.median(r.messages_per_second for r in mine),
            "albums/s": statistics.median(r.albums_per_second for r in mine),
            "MB/s": statistics.median(r.media_mb_per_second for r in mine),
        }
        m = medians[phase]
        print(
            f"median {phase:>6}: {m['msg/s']:,.0f} msg/s, {m['albums/s']:,.1f} albums/s, "
            f"{m['MB/s']:.1f} MB/s"
        )
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, metric in zip(axes, ("msg/s", "albums/s", "MB/s"), strict=True):
        values = [medians[p][metric] for p in ("first", "repeat")]
        ax.bar(["first replay", "repeat"], values, color=["#4C72B0", "#55A868"])
        ax.set_title(metric)
        for x, v in enumerate(values):
            ax.annotate(f"{v:,.1f}", (x, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(
        f"ingest replay, {args.albums} albums x {args.parts} parts, {args.media_kb} KiB media, "
        f"median of {args.runs}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
