"""Albums/s of 1, 2 and 3 worker processes on a 3-broker KRaft cluster: medians and a PNG.

Starts the cluster (compose/local/services/kafka.sh with KAFKA_BROKERS=3, beside the local
stack's broker, on KAFKA_CLUSTER_PORT and the two ports after it, 100 apart) unless one
answers already, and stops it at the end when it started it. Every run is the assembler on a
backlog (own topics with replication factor 3 and min.insync.replicas 2, sinks off,
at_least_once), as `make bench` measures one worker.

.venv/bin/python scripts/bench_cluster_scale.py --albums 10000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from streams.loadtest import run_assembler_benchmark

REPO = Path(__file__).resolve().parent.parent
STEP = 100


def _cluster_env(base: int) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_NAME": "kafka3",
        "KAFKA_BROKERS": "3",
        "KAFKA_PORT": str(base),
        "KAFKA_CONTROLLER_PORT": str(base + 1),
        "KAFKA_SASL_PORT": str(base + 2),
        "KAFKA_NODE_PORT_STEP": str(STEP),
    }


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _kafka(command: str, base: int) -> None:
    subprocess.run(
        ["bash", str(REPO / "compose" / "local" / "services" / "kafka.sh"), command],
        check=True,
        env=_cluster_env(base),
        cwd=REPO,
        timeout=300,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--albums", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("KAFKA_CLUSTER_PORT", "19092"))
    )
    parser.add_argument("--png", type=Path, default=Path("docs/bench/cluster-scale.png"))
    args = parser.parse_args()

    servers = [f"127.0.0.1:{args.port + i * STEP}" for i in range(3)]
    started = not _answers("127.0.0.1", args.port)
    if started:
        _kafka("up", args.port)
    # the workers the benchmark starts inherit these: RF 3 (min.insync.replicas 2 follows)
    os.environ["TOPIC_REPLICATION_FACTOR"] = "3"
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = ",".join(servers)
    counts = [int(w) for w in args.workers.split(",")]
    medians: dict[int, float] = {}
    cpu_per_k: dict[int, float] = {}
    try:
        for n in counts:
            albums_s, cpu, busy = [], [], []
            for i in range(args.runs):
                r = run_assembler_benchmark(
                    servers, args.albums, "at_least_once", args.partitions, seed=i, workers=n
                )
                albums_s.append(r.albums_per_second)
                cpu.append(1000 * (r.worker_cpu_seconds or 0.0) / r.albums)
                busy.append(r.machine_busy or 0.0)
                print(
                    f"x{n} run {i + 1}: {r.albums} albums ({r.events} events) in "
                    f"{r.seconds:.1f}s = {r.albums_per_second:,.0f} albums/s, "
                    f"{r.duplicates} duplicates; workers' CPU {r.worker_cpu_seconds or 0:.1f}s, "
                    f"machine {100 * (r.machine_busy or 0):.0f}% busy",
                    flush=True,
                )
            medians[n] = statistics.median(albums_s)
            cpu_per_k[n] = statistics.median(cpu)
            print(
                f"x{n}: median {medians[n]:,.0f} albums/s, {cpu_per_k[n]:.2f} worker CPU s per "
                f"1,000 albums, machine {100 * statistics.median(busy):.0f}% busy",
                flush=True,
            )
    finally:
        if started:
            _kafka("down", args.port)
    base = medians[counts[0]]
    for n, m in medians.items():
        print(
            f"{n} worker(s): {m:,.0f} albums/s = {m / base:.2f}x {counts[0]} worker(s); "
            f"{cpu_per_k[n]:.2f} worker CPU s per 1,000 albums"
        )
    print(f"on {os.cpu_count()} CPU cores, the three brokers on the same machine")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    names = [str(n) for n in medians]
    left.bar(names, list(medians.values()))
    left.set_xlabel("worker processes")
    left.set_ylabel("albums/s (median)")
    left.set_title(f"3 brokers, RF 3, {args.partitions} partitions, {os.cpu_count()} cores")
    right.bar(names, [cpu_per_k[n] for n in medians], color="tab:orange")
    right.set_xlabel("worker processes")
    right.set_ylabel("worker CPU s per 1,000 albums")
    right.set_title("CPU the workers spend (median)")
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
