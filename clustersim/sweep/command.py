"""``clustersim sweep SWEEP.yaml --out DIR``: the command line of the experiment layer."""

from __future__ import annotations

import sys
from pathlib import Path

from clustersim.sweep import analysis, spec
from clustersim.sweep.engine import ENGINES


def register(subparsers) -> None:
    """Add ``sweep`` to the ``clustersim`` command line."""
    p = subparsers.add_parser("sweep", help="run a sweep of seeded scenario runs on a process pool or a Dask cluster")
    p.add_argument("sweep", help="the sweep file (YAML)")
    p.add_argument("--out", default=None, help="output directory (default out/sweeps/<sweep name>)")
    p.add_argument("--engine", default="local", choices=ENGINES,
                   help="local: a process pool on this machine (default); dask: dask.distributed")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: the CPU count)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --engine dask: submit to this scheduler (tcp://host:8786) instead of a LocalCluster")
    p.add_argument("--resume", action="store_true", help="skip the runs whose rows are already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--check", action="store_true", help="validate the sweep and every point's scenario, then stop")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from clustersim.sweep import runs
    from clustersim.sweep.runner import run_sweep

    try:
        sw = spec.load(args.sweep)
        if args.workers is not None and args.workers < 1:
            print("clustersim: --workers must be at least 1", file=sys.stderr)
            return 2
        if args.scheduler and args.engine != "dask":
            print("clustersim: --scheduler needs --engine dask", file=sys.stderr)
            return 2
        if args.check:
            all_runs = runs.resolve(sw)
            runs.validate(sw, all_runs)
            points = len({r.point for r in all_runs})
            print(f"{args.sweep}: ok ({points} points x {sw.replications} replications = {len(all_runs)} runs)")
            return 0
        out = Path(args.out) if args.out else Path("out") / "sweeps" / sw.name
        report = run_sweep(sw, out, engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                           resume=args.resume, progress=not args.no_progress)
    except spec.SweepError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2
    rows = report["rows"]
    failed = report["failed"]
    print(f"sweep {sw.name}: {len(rows)} of {report['total']} runs recorded, {len(failed)} failed"
          + (" (interrupted: --resume continues)" if report["interrupted"] else ""))
    for r in failed[:5]:
        print(f"  run {r['run']} failed: {r['error']}")
    if len(failed) > 5:
        print(f"  ... and {len(failed) - 5} more (results.csv, column error)")
    table = analysis.knee_table(sw, report["knees"])
    if table:
        print(table)
    print("wrote " + ", ".join(str(p) for p in report["files"]))
    if report["interrupted"]:
        return 130
    return 1 if failed else 0
