"""The ``clustersim`` command line: the one place that sees both the model and the API."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clustersim.monitoring.scraper import scrape_interval
from sim.cluster import scenario as scenario_mod
from sim.cluster.cluster import Cluster


def _events_so_far(env) -> int | None:
    """How many events the environment has scheduled (simpy's id counter), without using one."""
    counter = getattr(env, "_eid", None)
    text = repr(counter)
    if text.startswith("count(") and text.endswith(")"):
        try:
            return int(text[6:-1].split(",")[0])
        except ValueError:
            return None
    return None


def _progress(cluster: Cluster, steps: int = 200, stream=sys.stderr) -> None:
    """Run the cluster to the scenario's end in ``steps`` equal slices of simulated time.

    On a terminal, a tqdm bar shows the simulated seconds done, the events per wall-clock
    second and the time left; elsewhere (CI, a pipe, a file) nothing is printed. The slices are
    the same either way, so what a run computes never depends on where it prints.
    """
    from tqdm import tqdm

    total = cluster.scenario.duration_ms
    tty = hasattr(stream, "isatty") and stream.isatty()
    bar = tqdm(total=round(total / 1000.0, 3), unit="s", unit_scale=False, desc="simulated", file=stream,
               disable=not tty, dynamic_ncols=True, leave=True,
               bar_format="{desc} {n:.1f}/{total:g}s |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}{postfix}]")
    t0 = time.perf_counter()
    e0 = _events_so_far(cluster.env)
    done = 0.0
    try:
        for i in range(1, steps + 1):
            cluster.run(total * i / steps)
            if not tty:
                continue
            now_s = round(cluster.env.now / 1000.0, 3)
            bar.update(now_s - done)
            done = now_s
            events = _events_so_far(cluster.env)
            wall = time.perf_counter() - t0
            if events is not None and e0 is not None and wall > 0:
                bar.set_postfix_str(f"{(events - e0) / wall:,.0f} events/s", refresh=False)
    finally:
        bar.close()


def cmd_run(args) -> int:
    from api.inprocess import attach as attach_api
    from clustersim.monitoring import attach as attach_scraper
    from clustersim.report import build_summary, check_expectations, summary_table, write_outputs

    sc = scenario_mod.load(args.scenario, seed=args.seed)
    out = Path(args.out) if args.out else Path("out") / sc.name
    cluster = Cluster(sc, state_dir=out / "state")
    attach_api(cluster)  # the timeline's `api` steps go through each node's API application
    scrape_ms = args.scrape_interval if args.scrape_interval is not None else sc.model.scrape_interval
    scraper = attach_scraper(cluster, scrape_ms) if scrape_ms else None
    _progress(cluster)
    if cluster.sampler is not None:
        cluster.sampler.sample()  # the row at the end of the run
    summary = build_summary(cluster, version=args.api_version)
    if scraper is not None:
        summary["monitoring"] = scraper.summary()
    verdicts = check_expectations(summary, sc.model.expectations)
    command = ["clustersim", "run", args.scenario, "--seed", str(cluster.seed), "--out", str(out)]
    if args.api_version != 9:
        command += ["--api-version", str(args.api_version)]
    files = write_outputs(cluster, out, summary, verdicts, command=command)
    if scraper is not None:
        files += scraper.write(out)  # scrapes.prom and scrapes.om.txt
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
    p.add_argument("--scrape-interval", type=scrape_interval, default=None, metavar="DURATION",
                   help="scrape every node like Prometheus (e.g. 15s) and write scrapes.prom and scrapes.om.txt")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate a scenario and its nginx.conf without running")
    p.add_argument("scenario")
    p.set_defaults(func=cmd_check)
    from clustersim import serve_cmd

    serve_cmd.register(sub)
    from clustersim import reporting

    reporting.register(sub)
    from clustersim.sweep import command as sweep_cmd

    sweep_cmd.register(sub)
    from clustersim.chaos import command as chaos_cmd

    chaos_cmd.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except scenario_mod.ScenarioError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
