"""Running a sweep end to end: resolve, validate, execute on an engine, write, analyse."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from clustersim.sweep import analysis, outputs, runs
from clustersim.sweep.engine import RunFailure, execute
from clustersim.sweep.spec import Sweep, SweepError


def resolved_document(sweep: Sweep, all_runs: list[runs.Run]) -> dict:
    """sweep.resolved.yaml: the sweep as understood (levels expanded) and every run's levels and seed."""
    return {
        "name": sweep.name,
        "description": sweep.description,
        "file": sweep.file,
        "seed": sweep.seed,
        "base": str(sweep.base),
        "set": sweep.overrides,
        "factors": {f.name: {"path": f.path, **({"levels": list(f.levels)} if f.continuous is None else
                                                 {f.continuous[0]: [f.continuous[1], f.continuous[2]]})}
                    for f in sweep.factors},
        "design": sweep.design,
        **({"samples": sweep.samples} if sweep.samples else {}),
        "replications": sweep.replications,
        "seeds": sweep.seeds,
        "metrics": [{"name": m.name, "path": m.path or m.derived} for m in sweep.metrics],
        **({"objective": sweep.objective_text} if sweep.objective_text else {}),
        **({"load": sweep.load} if sweep.load else {}),
        "plot": list(sweep.plot),
        "runs": [{"run": r.index, "point": r.point, "replication": r.replication, "seed": r.seed, **r.levels}
                 for r in all_runs],
    }


def _base_row(run: runs.Run) -> dict:
    return {"run": run.index, "point": run.point, "replication": run.replication, "seed": run.seed, **run.levels}


def run_sweep(sweep: Sweep, out: Path, *, engine: str = "local", workers: int | None = None,
              scheduler: str | None = None, resume: bool = False, progress: bool = True,
              log=print) -> dict:
    """Run every run of ``sweep`` not already done, and write DIR's files. Returns a report dict
    with ``rows`` (sorted), ``points``, ``knees``, ``files``, ``interrupted`` and ``failed``."""
    all_runs = runs.resolve(sweep)
    runs.validate(sweep, all_runs)
    out.mkdir(parents=True, exist_ok=True)
    resolved = yaml.safe_dump(resolved_document(sweep, all_runs), sort_keys=False, allow_unicode=True)
    resolved_path = out / "sweep.resolved.yaml"
    done = outputs.read_rows(out)
    if done and not resume:
        raise SweepError(f"{out}: holds rows of an earlier sweep; pass --resume to continue it, "
                         "or choose another --out")
    if resume and resolved_path.exists() and resolved_path.read_text() != resolved:
        raise SweepError(f"{out}: sweep.resolved.yaml differs from {sweep.file} as it is now; "
                         "--resume continues the same sweep only")
    resolved_path.write_text(resolved)
    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)
    for run in all_runs:
        p = runs_dir / f"run-{run.index:04d}.yaml"
        if not p.exists() or p.read_text() != run.text:
            p.write_text(run.text)
    skip = {i for i, r in done.items() if r.get("status") == "ok" and i < len(all_runs)}
    if skip:
        log(f"resuming: {len(skip)} of {len(all_runs)} runs already done")
    payloads = [runs.payload(sweep, r) for r in all_runs]
    rows = {i: r for i, r in done.items() if i in skip}
    interrupted = False
    with (out / outputs.ROWS).open("ab") as f:
        try:
            for index, result in execute(runs.run_one, payloads, engine=engine, workers=workers, scheduler=scheduler,
                                         desc=sweep.name, progress=progress, retries=sweep.retries, skip=skip):
                if isinstance(result, RunFailure):
                    result = {"status": "failed", "error": result.error, "wall_s": None}
                row = {**_base_row(all_runs[index]), **result}
                rows[index] = row
                outputs.append_row(f, row)
        except KeyboardInterrupt:
            interrupted = True
    ordered = [rows[i] for i in sorted(rows)]
    report = write_results(sweep, out, ordered)
    report["interrupted"] = interrupted
    report["total"] = len(all_runs)
    return report


def write_results(sweep: Sweep, out: Path, ordered: list[dict]) -> dict:
    cols = outputs.columns(sweep)
    files = [outputs.write_csv(out / "results.csv", cols, ordered)]
    pq = outputs.write_parquet(out / "results.parquet", cols, ordered)
    if pq is not None:
        files.append(pq)
    points = analysis.aggregate(sweep, ordered)
    if points:
        pcols = list(points[0])
        files.append(outputs.write_csv(out / "points.csv", pcols, points))
    table = analysis.knees(sweep, points)
    if table:
        files.append(outputs.write_csv(out / "knee.csv", list(table[0]), table))
    try:
        files.extend(analysis.plot_curves(sweep, points, table, out))
    except Exception as e:  # a plot is a convenience; the tables are written already
        print(f"clustersim sweep: plots not written: {e}", file=sys.stderr)
    return {"rows": ordered, "points": points, "knees": table, "files": files,
            "failed": [r for r in ordered if r["status"] != "ok"]}
