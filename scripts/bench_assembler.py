"""Assembler throughput for both processing guarantees (sinks off); prints medians.

.venv/bin/python scripts/bench_assembler.py --albums 5000 --runs 3
.venv/bin/python scripts/bench_assembler.py --sinks s3,postgres,qdrant,neo4j  # end to end
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
    parser.add_argument(
        "--sinks", default="", help="sinks to run, e.g. s3,postgres,qdrant,neo4j (default none)"
    )
    args = parser.parse_args()
    sinks = tuple(s for s in args.sinks.split(",") if s)
    guarantees = args.guarantee or ["at_least_once", "exactly_once"]
    medians: dict[str, float] = {}
    for g in guarantees:
        rates, stored = [], []
        for i in range(args.runs):
            r = run_assembler_benchmark(
                settings.bootstrap_servers, args.albums, g, args.partitions, seed=i, sinks=sinks
            )
            rates.append(r.events_per_second)
            line = (
                f"{g} run {i + 1}: {r.events} events / {r.albums} albums in {r.seconds:.1f}s = "
                f"{r.events_per_second:,.0f} events/s ({r.albums_per_second:,.0f} albums/s), "
                f"{r.duplicates} duplicates"
            )
            if r.stored_albums_per_second is not None:
                stored.append(r.stored_albums_per_second)
                line += (
                    f"; in all of {','.join(sinks)} after {r.stored_seconds:.1f}s = "
                    f"{r.stored_albums_per_second:,.1f} albums/s end to end, {r.parked} parked"
                )
            print(line, flush=True)
        medians[g] = statistics.median(rates)
        print(f"{g}: median {medians[g]:,.0f} events/s over {args.runs} runs", flush=True)
        if stored:
            print(
                f"{g}: median {statistics.median(stored):,.1f} albums/s end to end "
                f"with sinks {','.join(sinks)}",
                flush=True,
            )
    if len(medians) == 2:
        ratio = medians["exactly_once"] / medians["at_least_once"]
        print(f"exactly_once / at_least_once = {ratio:.2f}")


if __name__ == "__main__":
    main()
