"""The ``clustersim`` command line: the one place that sees both the model and the API."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sim.cluster import scenario as scenario_mod
from sim.cluster.cluster import Cluster


def _progress(cluster: Cluster, steps: int = 40, stream=sys.stderr) -> None:
    """Run the cluster to the scenario's end, drawing a progress bar on a terminal."""
    total = cluster.scenario.duration_ms
    tty = stream.isatty()
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        cluster.run(total * i / steps)
        if tty:
            bar = "#" * i + "." * (steps - i)
            stream.write(f"\r[{bar}] {cluster.env.now / 1000:8.1f}s simulated")
            stream.flush()
    if tty:
        stream.write(f"\r[{'#' * steps}] {total / 1000:8.1f}s simulated in {time.perf_counter() - t0:.1f}s\n")


def cmd_run(args) -> int:
    from clustersim.report import build_summary, check_expectations, summary_table, write_outputs

    sc = scenario_mod.load(args.scenario, seed=args.seed)
    out = Path(args.out) if args.out else Path("out") / sc.name
    cluster = Cluster(sc, state_dir=out / "state")
    _progress(cluster)
    if cluster.sampler is not None:
        cluster.sampler.sample()  # the row at the end of the run
    summary = build_summary(cluster, version=args.api_version)
    verdicts = check_expectations(summary, sc.model.expectations)
    files = write_outputs(cluster, out, summary, verdicts)
    print(f"scenario {sc.name}: {len(sc.nodes)} nodes, seed {cluster.seed}, {sc.duration_ms / 1000:g}s simulated")
    print(summary_table(summary))
    if summary["not_simulated"]:
        names = sorted({d["directive"] for d in summary["not_simulated"]})
        print(f"not simulated (accepted, no effect): {', '.join(names)}")
    for v in verdicts:
        print(f"expectation {'PASS' if v['passed'] else 'FAIL'}: {v['name']} (actual {v['actual']})")
    print("wrote " + ", ".join(str(p) for p in files))
    return 0 if all(v["passed"] for v in verdicts) else 1


def cmd_check(args) -> int:
    sc = scenario_mod.load(args.scenario)
    print(f"{args.scenario}: ok ({len(sc.nodes)} nodes, {len(sc.workloads)} workloads, seed {sc.seed})")
    for spec in sc.nodes:
        names = sorted({ns.directive for ns in spec.conf.not_simulated})
        if names:
            print(f"  {spec.name}: not simulated: {', '.join(names)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clustersim", description="Simulate a cluster of NGINX Plus nodes.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a scenario in virtual time and write its report")
    p.add_argument("scenario")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--out", default=None, help="output directory (default out/<scenario name>)")
    p.add_argument("--api-version", type=int, default=9, choices=range(1, 10), help="API version of the summary")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate a scenario and its nginx.conf without running")
    p.add_argument("scenario")
    p.set_defaults(func=cmd_check)
    from clustersim import serve_cmd

    serve_cmd.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except scenario_mod.ScenarioError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
