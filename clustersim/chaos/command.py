"""``clustersim chaos SCENARIO --schedules N --seed S --out DIR [--engine local|dask]``.

Draws N schedules with the nemesis, runs them on the sweep engine (a process pool, or Dask),
and writes ``schedules.jsonl`` and ``schedules.csv`` (one row per schedule) and
``convergence.png`` (a histogram of the times to converge after the last write or heal) to DIR. It prints
the worst schedules with the command that re-runs each alone (``--only I``). The exit code is 1
when any schedule ends unconverged with unexplained lost updates or divergent keys.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from clustersim.chaos.campaign import run_schedule
from clustersim.chaos.nemesis import KINDS, Nemesis
from sim.cluster import scenario as scenario_mod

DEFAULT_MAX_STEPS = 4
DEFAULT_PROBE_MS = 100.0


def nemesis_for(sc, kinds=KINDS, start_share: float = 0.1, heal_by_share: float = 0.6, max_steps: int = 4) -> Nemesis:
    """Faults between ``start_share`` and ``heal_by_share`` of the scenario's duration."""
    d = sc.duration_ms
    return Nemesis(tuple(n.name for n in sc.nodes), d * start_share, d * heal_by_share, tuple(kinds),
                   max_steps=max_steps, max_duration_ms=min(20_000.0, d * (heal_by_share - start_share)))


def payloads(scenario_path: str, seed: int, indexes, nemesis: Nemesis, probe_ms: float) -> list[dict]:
    return [{"scenario": scenario_path, "seed": seed, "index": i, "probe_ms": probe_ms,
             "steps": [s.to_dict() for s in nemesis.schedule(seed, i)]} for i in indexes]


def _histogram(rows, path: Path) -> Path | None:
    times = [r["time_to_converge_ms"] / 1000.0 for r in rows if r.get("time_to_converge_ms") is not None]
    if not times:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(times, bins=min(40, max(5, len(times) // 5)))
    ax.set_xlabel("time to converge after the last write or heal (s)")
    ax.set_ylabel("schedules")
    ax.set_title(f"{len(times)} of {len(rows)} schedules converged")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_rows(rows: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    jl = out / "schedules.jsonl"
    jl.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    cs = out / "schedules.csv"
    fields = ["index", "converged", "time_to_converge_ms", "max_divergent_keys", "lost_updates", "unexplained",
              "causes", "partition_ms", "max_clock_offset_ms", "writes", "schedule"]
    with cs.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "causes": json.dumps(r["causes"], sort_keys=True), "schedule": "; ".join(r["schedule"])})
    files = [jl, cs]
    png = _histogram(rows, out / "convergence.png")
    if png is not None:
        files.append(png)
    return files


def _badness(r: dict) -> tuple:
    ttc = r["time_to_converge_ms"]
    return (r["unexplained"] > 0, not r["converged"], r["lost_updates"], -1 if ttc is None else ttc)


def cmd_chaos(args) -> int:
    from clustersim.sweep.engine import RunFailure, execute

    sc = scenario_mod.load(args.scenario, seed=args.seed)
    seed = sc.seed if args.seed is None else args.seed
    kinds = tuple(k.strip() for k in args.kinds.split(",")) if args.kinds else KINDS
    try:
        nem = nemesis_for(sc, kinds, max_steps=args.max_steps)
    except ValueError as err:
        print(f"clustersim: {args.scenario}: {err}", file=sys.stderr)
        return 2
    indexes = [args.only] if args.only is not None else range(args.schedules)
    work = payloads(args.scenario, seed, indexes, nem, args.probe_ms)
    rows, failures = [], []
    for i, result in execute(run_schedule, work, engine=args.engine, workers=args.workers, desc="schedules"):
        if isinstance(result, RunFailure):
            failures.append((work[i]["index"], result))
        else:
            rows.append(result)
    rows.sort(key=lambda r: r["index"])
    out = Path(args.out)
    files = write_rows(rows, out)
    converged = sum(1 for r in rows if r["converged"])
    unexplained = [r for r in rows if r["unexplained"]]
    print(f"chaos {sc.name}: {len(rows)} schedules (seed {seed}), {converged} converged, "
          f"{len(unexplained)} with unexplained lost updates, {len(failures)} failed to run")
    totals: dict[str, int] = {}
    for r in rows:
        for c, n in r["causes"].items():
            totals[c] = totals.get(c, 0) + n
    if totals:
        print("lost updates by cause: " + ", ".join(f"{c} {n}" for c, n in totals.items()))
    worst = sorted(rows, key=_badness, reverse=True)[: args.worst]
    # what draws and runs the same schedule again: the seed and index, and every option that
    # changes how schedules are drawn or judged
    same = "".join([f" --kinds {','.join(kinds)}" if args.kinds else "",
                    f" --max-steps {args.max_steps}" if args.max_steps != DEFAULT_MAX_STEPS else "",
                    f" --probe-ms {args.probe_ms:g}" if args.probe_ms != DEFAULT_PROBE_MS else ""])
    if worst:
        print("worst schedules:")
    for r in worst:
        ttc = "never" if r["time_to_converge_ms"] is None else f"{r['time_to_converge_ms'] / 1000:g}s"
        causes = f" {r['causes']}" if r["causes"] else ""
        print(f"  #{r['index']}: converged {ttc}, {r['lost_updates']} lost{causes}, "
              f"peak {r['max_divergent_keys']} keys; {'; '.join(r['schedule'])}")
        print(f"    clustersim chaos {args.scenario} --seed {seed}{same} --only {r['index']} --out {out / str(r['index'])}")
    for index, failure in failures:
        print(f"  #{index} failed: {failure}", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in files))
    bad = any(not r["converged"] and r["unexplained"] for r in rows)
    return 1 if bad or failures else 0


def register(sub) -> None:
    p = sub.add_parser("chaos", help="run random fault schedules and check replication after each")
    p.add_argument("scenario")
    p.add_argument("--schedules", type=int, default=100, help="how many schedules to draw and run")
    p.add_argument("--seed", type=int, default=None, help="the campaign's seed (default: the scenario's)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--engine", choices=("local", "dask"), default="local")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--only", type=int, default=None, metavar="I", help="run schedule I of the campaign alone")
    p.add_argument("--kinds", default=None, help=f"comma-separated fault kinds (default all: {','.join(KINDS)})")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="faults per schedule, at most")
    p.add_argument("--probe-ms", type=float, default=DEFAULT_PROBE_MS, help="replication probe interval")
    p.add_argument("--worst", type=int, default=5, help="how many of the worst schedules to print")
    p.set_defaults(func=cmd_chaos)
