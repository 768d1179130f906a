"""``clustersim serve`` and ``clustersim loadtest``: the live cluster and the locust harness.

``serve`` builds the scenario's cluster and serves it on loopback (:mod:`api.live`) until
Ctrl-C. At start it prints where every node listens and the control endpoint, then one line of
JSON (``{"event": "serving", ...}``) for programs. ``loadtest NAME`` starts ``serve`` for the
load test's scenario in a subprocess, runs ``locust --headless`` on ``loadtests/NAME.py``
against it in another, and prints locust's stats and the checker's verdict; its exit code is
locust's (non-zero when a check failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Load test name -> (scenario file, locust file), relative to the repository.
LOADTESTS: dict[str, tuple[str, str]] = {
    "traffic_counters": ("scenarios/loadtest-traffic-counters.yaml", "loadtests/traffic_counters.py"),
    "keyval_sync": ("scenarios/loadtest-keyval-sync.yaml", "loadtests/keyval_sync.py"),
    "upstream_churn": ("scenarios/loadtest-upstream-churn.yaml", "loadtests/upstream_churn.py"),
    "chaos_partition": ("scenarios/loadtest-chaos-partition.yaml", "loadtests/chaos_partition.py"),
}


def register(subparsers) -> None:
    """Add ``serve`` and ``loadtest`` to the ``clustersim`` command line."""
    p = subparsers.add_parser("serve", help="serve a scenario's cluster on loopback, in step with the wall clock")
    p.add_argument("scenario")
    _serve_options(p)
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("loadtest", help="run a locust load test against a served cluster and check it")
    p.add_argument("name", help=f"one of {', '.join(LOADTESTS)}")
    p.add_argument("--users", type=int, default=8, help="locust users (default 8)")
    p.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    p.add_argument("--time", default="10s", help="how long locust sends (default 10s)")
    p.add_argument("--scenario", default=None, help="serve this scenario instead of the load test's own")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--port-offset", type=int, default=None)
    p.add_argument("--address-base", default=None)
    p.add_argument("--locust-arg", action="append", default=[], help="extra argument passed to locust")
    p.set_defaults(func=cmd_loadtest)


def _serve_options(p) -> None:
    p.add_argument("--speed", type=float, default=1.0, help="sim seconds per wall second (default 1)")
    p.add_argument("--port-offset", type=int, default=None, metavar="N",
                   help="bind every node on 127.0.0.1, node i at port + N*i (systems without 127.0.0.x)")
    p.add_argument("--address-base", default=None, metavar="ADDR",
                   help="bind node i at ADDR + i instead of the scenario's addresses")
    p.add_argument("--control-host", default="127.0.0.1")
    p.add_argument("--control-port", type=int, default=8999, help="control endpoint port (0: any free port)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--no-workload", action="store_true", help="do not start the scenario's background workloads")
    from clustersim.monitoring.scraper import scrape_interval

    p.add_argument("--scrape-interval", type=scrape_interval, default=None, metavar="DURATION",
                   help="scrape every node like Prometheus (sim time, e.g. 15s); the files are written at exit")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where --scrape-interval writes scrapes.prom and scrapes.om.txt (default out/<scenario>-live)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the run's report (summary, time series, report.html) into --out at exit")


# ---------------------------------------------------------------------------------------------
# serve


def cmd_serve(args) -> int:
    from api.live import LiveCluster, LiveError, serve
    from sim.cluster import scenario as scenario_mod
    from sim.cluster.cluster import Cluster

    try:
        sc = scenario_mod.load(args.scenario, seed=args.seed)
    except scenario_mod.ScenarioError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("clustersim: --speed must be positive", file=sys.stderr)
        return 2
    from api.inprocess import attach as attach_api
    from clustersim.monitoring import attach as attach_scraper

    cluster = Cluster(sc, start_workloads=not args.no_workload)
    attach_api(cluster)  # the timeline's `api` steps, through each node's API application
    scrape_ms = args.scrape_interval if args.scrape_interval is not None else sc.model.scrape_interval
    scraper = attach_scraper(cluster, scrape_ms) if scrape_ms else None
    live = LiveCluster(cluster, speed=args.speed, port_offset=args.port_offset, address_base=args.address_base,
                       control_host=args.control_host, control_port=args.control_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(live, stop, on_start=_banner)

    try:
        asyncio.run(main())
    except LiveError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2
    stats = live.pacer.stats()
    if scraper is not None:
        files = scraper.write(Path(args.out) if args.out else Path("out") / f"{sc.name}-live")
        print(f"wrote {', '.join(str(f) for f in files)} ({len(scraper.scrapes)} node scrapes)")
    if not args.no_report:
        report_files = _write_report(cluster, Path(args.out) if args.out else Path("out") / f"{sc.name}-live", args)
        print(f"wrote {', '.join(str(f) for f in report_files)}")
    print(f"stopped at sim time {cluster.env.now / 1000:.3f}s; pacer lag p50 {stats['lag']['p50_ms']} ms, "
          f"p99 {stats['lag']['p99_ms']} ms")
    print(json.dumps({"event": "stopped", "sim_ms": round(cluster.env.now, 3), "pacer": stats}), flush=True)
    return 0


def _write_report(cluster, out: Path, args) -> list[Path]:
    """What ``clustersim run`` writes, for the part of the scenario that was served (report.html too)."""
    from clustersim.report import build_summary, check_expectations, write_outputs

    if cluster.sampler is not None:
        cluster.sampler.sample()  # the row at the moment serving stopped
    summary = build_summary(cluster)
    verdicts = check_expectations(summary, cluster.scenario.model.expectations)
    command = ["clustersim", "serve", args.scenario, "--seed", str(cluster.seed), "--speed", f"{args.speed:g}"]
    return write_outputs(cluster, out, summary, verdicts, command=command)


def _banner(live) -> None:
    d = live.describe()
    print(f"serving {d['scenario']} (seed {d['seed']}, speed {d['speed']:g}x); Ctrl-C stops")
    for n in d["nodes"]:
        listens = ", ".join(f"{b['kind']} {b['address']}:{b['port']}" for b in n["listens"]) or "nothing"
        print(f"  {n['name']}: {listens}")
        for a in n["api"]:
            print(f"    api {a['url']}/ ({'write' if a['write'] else 'read-only'})")
    print(f"  control: {d['control']}/")
    print(json.dumps(d), flush=True)


# ---------------------------------------------------------------------------------------------
# loadtest


def start_serve(scenario: str, extra: list[str], *, timeout: float = 30.0, env=None) -> tuple[subprocess.Popen, dict]:
    """Start ``clustersim serve`` in a subprocess; return it and its ``serving`` description."""
    cmd = [sys.executable, "-m", "clustersim.serve_cmd", "serve", scenario, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():  # a thread, so that a silent server cannot block us past the timeout
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    errors: list[str] = []

    def pump_errors():  # keep reading, so a chatty server never blocks on a full pipe
        for line in proc.stderr:
            errors.append(line)

    readers = [threading.Thread(target=pump, daemon=True), threading.Thread(target=pump_errors, daemon=True)]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith("{"):
            info = json.loads(line)
            if info.get("event") == "serving":
                proc.output_lines = lines
                proc.error_lines = errors
                return proc, info
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for t in readers:
        t.join(timeout=2)
    err = "".join(errors).strip()
    raise RuntimeError(f"clustersim serve did not start: {err or 'no output'}")


def stop_serve(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Ctrl-C the server and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def locust_command(locustfile: str, host: str, *, users: int, spawn_rate: float | None, run_time: str,
                   extra: list[str] = ()) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", locustfile, "--headless", "--host", host,
        "-u", str(users), "-r", str(spawn_rate or users), "-t", run_time,
        "--stop-timeout", "10", "--only-summary", "--loglevel", "WARNING", *extra,
    ]


def cmd_loadtest(args) -> int:
    if args.name not in LOADTESTS:
        print(f"clustersim: unknown load test {args.name!r}; one of {', '.join(LOADTESTS)}", file=sys.stderr)
        return 2
    scenario, locustfile = LOADTESTS[args.name]
    scenario = args.scenario or str(ROOT / scenario)
    extra = ["--control-port", "0", "--speed", str(args.speed)]
    if args.port_offset is not None:
        extra += ["--port-offset", str(args.port_offset)]
    if args.address_base is not None:
        extra += ["--address-base", args.address_base]
    try:
        proc, info = start_serve(scenario, extra)
    except RuntimeError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2
    print(f"serving {info['scenario']}: control {info['control']}", flush=True)
    try:
        cmd = locust_command(str(ROOT / locustfile), info["control"], users=args.users, spawn_rate=args.spawn_rate,
                             run_time=args.time, extra=args.locust_arg)
        code = subprocess.call(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": _pythonpath()})
    finally:
        stop_serve(proc)
    print(f"load test {args.name}: {'PASSED' if code == 0 else f'FAILED (locust exit code {code})'}")
    return code


def _pythonpath() -> str:
    old = os.environ.get("PYTHONPATH")
    return str(ROOT) + (os.pathsep + old if old else "")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m clustersim.serve_cmd serve ...``)."""
    parser = argparse.ArgumentParser(prog="clustersim")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
