"""Virtual-time throughput: simulated client requests completed per wall-clock second.

Runs the default scenario's cluster (scenarios/seed-example.yaml: 3 nodes, caching and health
checks on) under a heavy workload and compares, in the same process, with the rate of a bare
simpy loop that schedules timeouts with callbacks (the cheapest thing simpy can do per event).
Prints both rates and their ratio for a few alternating rounds, and the median ratio; the goal is
a ratio >= 0.25 on one core. It also says whether the hot path runs compiled (see
docs/performance.md). With --memory it then measures peak memory for 1M and 5M simulated
requests (each in a fresh subprocess) to show memory stays flat.

    python benchmarks/virtual_throughput.py [--requests N] [--rounds K] [--paths N] [--memory]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import simpy
from simpy.events import Timeout

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import _native as native  # noqa: E402
from sim.cluster import scenario as scenario_mod  # noqa: E402
from sim.cluster.cluster import Cluster  # noqa: E402


def bare_simpy_rate(n_events: int = 1_000_000) -> float:
    """Events per second of a loop of timeouts, each scheduling the next from its callback."""
    env = simpy.Environment()
    count = [0]

    def cb(_ev):
        count[0] += 1
        if count[0] < n_events:
            Timeout(env, 1.0).callbacks.append(cb)

    # a handful of independent chains, like independent arrival streams
    for _ in range(8):
        Timeout(env, 1.0).callbacks.append(cb)
    t = time.perf_counter()
    env.run()
    return count[0] / (time.perf_counter() - t)


def heavy_scenario(rate_per_node: float, duration_ms: float, paths: int | None = None):
    """The default scenario at ``rate_per_node``; ``paths`` replaces its URL count (a single
    path leaves only cache hits after the first request, the cheapest road through a node)."""
    sc = scenario_mod.load(ROOT / "scenarios" / "seed-example.yaml")
    workloads = tuple(
        replace(w, rate=rate_per_node, paths=w.paths if paths is None else replace(w.paths, count=paths))
        for w in sc.workloads
    )
    model = sc.model.model_copy(update={"duration": duration_ms, "faults": []})
    # enough backend capacity for the offered load: the benchmark measures the model, not a queue
    backend = sc.backend_default.model_copy(update={"concurrency": 100_000})
    return replace(sc, workloads=workloads, model=model, backend_default=backend)


def completed_requests(cluster: Cluster) -> int:
    return sum(st.completed for w in cluster.workloads for st in w.stats.values())


def cluster_rate(requests: int, paths: int | None = None) -> tuple[float, int]:
    rate_per_node = 2000.0
    duration = requests / (rate_per_node * 3) * 1000.0
    cluster = Cluster(heavy_scenario(rate_per_node, duration, paths))
    t = time.perf_counter()
    cluster.run()
    wall = time.perf_counter() - t
    done = completed_requests(cluster)
    return done / wall, done


def peak_rss_for(requests: int) -> int:
    """Peak RSS (KiB) of a fresh process simulating ``requests`` requests."""
    code = (
        f"import resource, sys; sys.path.insert(0, {str(ROOT)!r});"
        f"from benchmarks.virtual_throughput import cluster_rate; cluster_rate({requests});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurements of both; the median ratio is reported")
    ap.add_argument("--paths", type=int, default=None,
                    help="URL count instead of the scenario's (1: nearly every request is a cache hit; "
                         "1000000: nearly every one is a miss)")
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS at 1M and 5M requests")
    args = ap.parse_args()
    print(f"hot path:              {native.MODE}")
    if args.paths is not None:
        print(f"paths:                 {args.paths} (the scenario's workload has its own count otherwise)")
    ratios = []
    for i in range(max(1, args.rounds)):
        # both measured back to back, so a busy spell on this machine tends to hit both
        bare = bare_simpy_rate()
        rate, done = cluster_rate(args.requests, args.paths)
        ratios.append(rate / bare)
        print(f"round {i + 1}: bare simpy loop {bare:12,.0f} timeouts/s   cluster (3 nodes) {rate:10,.0f} "
              f"simulated requests/s ({done:,} requests)   ratio {rate / bare:.3f}")
    print(f"ratio (median of {len(ratios)}): {statistics.median(ratios):8.3f}   (goal >= 0.25)")
    if args.memory:
        small = peak_rss_for(1_000_000)
        large = peak_rss_for(5_000_000)
        print(f"peak RSS at 1M requests: {small / 1024:8.1f} MiB")
        print(f"peak RSS at 5M requests: {large / 1024:8.1f} MiB")
        print(f"growth:                  {100 * (large - small) / small:8.1f} %   (goal <= 10 %)")


if __name__ == "__main__":
    main()
