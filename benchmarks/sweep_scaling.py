"""Sweep scaling: the same 16-run sweep on 1 and on 2 local workers.

Prints the wall time of each, the speed-up ratio (the goal is 1.8 or more on 2 cores, which
needs the per-run overhead to be small against the run time) and the per-run overhead: the
1-worker sweep's wall time, less the time spent inside the runs, per run. Pool start-up is
included, as a user pays it. ``--duration`` sets the simulated seconds of each run.

    python benchmarks/sweep_scaling.py [--duration 8s] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from clustersim.sweep import runs, spec
from clustersim.sweep.engine import execute

ROOT = Path(__file__).resolve().parent.parent


def sweep_text(duration: str) -> str:
    return f"""
name: scaling
seed: 5
base: {(ROOT / 'scenarios' / 'seed-example.yaml').as_posix()}
set: {{duration: {duration}, faults: [], expectations: []}}
factors:
  rate: {{path: workloads.0.rate, levels: [300, 600, 900, 1200]}}
  balancer: {{path: "nginx:http.upstream[backend].balancer", levels: [round_robin, least_conn]}}
replications: 2
metrics: [p99_ms, throughput_rps]
"""


def timed(payloads, workers: int) -> tuple[float, float, list]:
    t0 = time.perf_counter()
    results = dict(execute(runs.run_one, payloads, workers=workers, progress=False))
    elapsed = time.perf_counter() - t0
    inside = sum(r["wall_s"] for r in results.values())
    return elapsed, inside, [results[i] for i in sorted(results)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", default="8s")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sw = spec.loads(sweep_text(args.duration), filename="scaling.yaml")
    all_runs = runs.resolve(sw)
    payloads = [runs.payload(sw, r) for r in all_runs]
    one, inside_one, res1 = timed(payloads, 1)
    many, _, res2 = timed(payloads, args.workers)
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in res1]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in res2], "results depend on workers"
    overhead_ms = (one - inside_one) / len(payloads) * 1000
    print(f"{len(payloads)} runs of {args.duration} simulated, mode {os.environ.get('CLUSTERSIM_PURE') and 'pure' or 'as built'}")
    print(f"1 worker:  {one:7.2f} s  (mean run {inside_one / len(payloads) * 1000:.0f} ms)")
    print(f"{args.workers} workers: {many:7.2f} s")
    print(f"speed-up {one / many:.2f} (goal >= 1.8 on 2 cores); per-run overhead {overhead_ms:.1f} ms")


if __name__ == "__main__":
    main()
