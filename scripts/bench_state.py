"""State benchmark: albums in flight in one worker, its peak memory, and restart times.

    .venv/bin/python scripts/bench_state.py --albums 1000000     # or: make bench-state

Produces `--albums` albums.parsed events without vision (every album stays in flight, with a
one-day deadline), runs one worker (sinks off) until its album_state holds all of them, and
prints the peak resident memory of the worker and of the worker with its stage processes.
Then it measures a restart on the worker's local RocksDB, and one with the local tables
deleted (restored from the changelogs), each until /health answers and every album is indexed.
Draws docs/bench/state.png (memory and albums in state over time).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from streams.loadtest import StateResult, run_state_benchmark
from streams.settings import settings

MB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--albums", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--png", type=Path, default=Path("docs/bench/state.png"))
    args = parser.parse_args()
    r = run_state_benchmark(settings.bootstrap_servers, args.albums, args.partitions)
    print(
        f"{r.albums:,} albums ({r.posts:,} posts) in flight after {r.load_seconds:.0f}s "
        f"({r.albums / r.load_seconds:,.0f} albums/s)",
        flush=True,
    )
    print(
        f"peak RSS: worker {r.worker_peak_rss / MB:,.0f} MB, "
        f"worker with its stage processes {r.total_peak_rss / MB:,.0f} MB"
    )
    print(f"restart on local RocksDB: {r.restart_seconds:.1f}s until healthy with every album")
    print(f"restart from the changelogs (local tables deleted): {r.recovery_seconds:.1f}s")
    _plot(args.png, r)
    print(f"wrote {args.png}")


def _plot(png: Path, r: StateResult) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    t = [p[0] for p in r.timeline]
    left.plot(t, [p[1] / MB for p in r.timeline], label="worker RSS (MB)")
    left.plot(t, [p[2] / MB for p in r.timeline], label="with stage processes (MB)")
    left.set_xlabel("seconds since the worker was started")
    left.set_ylabel("MB")
    left.set_title(f"memory while {r.albums:,} albums come into state")
    states = left.twinx()
    states.plot(t, [max(0, p[3]) for p in r.timeline], color="grey", linestyle=":")
    states.set_ylabel("albums in state (dotted)")
    left.legend(loc="upper left")
    right.bar(["local RocksDB", "from changelogs"], [r.restart_seconds, r.recovery_seconds])
    right.set_ylabel("seconds until healthy with every album")
    right.set_title("restart")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
