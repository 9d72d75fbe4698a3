"""Assembler throughput for both processing guarantees (sinks off); prints medians.

.venv/bin/python scripts/bench_assembler.py --albums 5000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics

from streams.loadtest import run_assembler_benchmark
from streams.settings import settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--albums", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--guarantee", action="append", choices=["at_least_once", "exactly_once"], default=None
    )
    args = parser.parse_args()
    guarantees = args.guarantee or ["at_least_once", "exactly_once"]
    medians: dict[str, float] = {}
    for g in guarantees:
        rates = []
        for i in range(args.runs):
            r = run_assembler_benchmark(
                settings.bootstrap_servers, args.albums, g, args.partitions, seed=i
            )
            rates.append(r.events_per_second)
            print(
                f"{g} run {i + 1}: {r.events} events / {r.albums} albums in {r.seconds:.1f}s = "
                f"{r.events_per_second:,.0f} events/s ({r.albums_per_second:,.0f} albums/s), "
                f"{r.duplicates} duplicates",
                flush=True,
            )
        medians[g] = statistics.median(rates)
        print(f"{g}: median {medians[g]:,.0f} events/s over {args.runs} runs", flush=True)
    if len(medians) == 2:
        ratio = medians["exactly_once"] / medians["at_least_once"]
        print(f"exactly_once / at_least_once = {ratio:.2f}")


if __name__ == "__main__":
    main()
