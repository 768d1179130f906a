"""From a sweep to its runs: resolved scenarios, payloads, and the function a worker calls.

Every run is a scenario of its own: the base scenario with the sweep's ``set`` overrides, the
point's factor levels and the run's seed applied, written out as YAML text. Paths in it are
absolute, and an edited nginx.conf is inlined, so the text is all a worker needs besides the
package (and, for a config with ``include``, the included files at the same paths). The same
text is written to ``DIR/runs/run-NNNN.yaml``, which ``clustersim run`` reproduces exactly.

:func:`run_one` is the worker's side: it loads the text, runs the cluster in virtual time and
returns the row's values. It never raises: an error becomes ``status: failed`` with the
error's one-line text, so a bad run does not stop the sweep.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from clustersim.sweep import design, paths
from clustersim.sweep.spec import Sweep, SweepError


@dataclass(frozen=True)
class Run:
    index: int
    point: int
    replication: int
    seed: int
    levels: dict  # factor name -> level
    text: str  # the resolved scenario (YAML)
    base_dir: str


def _absolute(data: dict, base_dir: Path) -> None:
    """Make the scenario's file references absolute, so the text runs from anywhere."""
    def fix(ref):
        return ref if not isinstance(ref, str) or Path(ref).is_absolute() else str((base_dir / ref).resolve())

    if "nginx_conf" in data:
        data["nginx_conf"] = fix(data["nginx_conf"])
    if isinstance(data.get("nodes"), list):
        for n in data["nodes"]:
            if isinstance(n, dict) and "nginx_conf" in n:
                n["nginx_conf"] = fix(n["nginx_conf"])
    if isinstance(data.get("include_map"), dict):
        data["include_map"] = {k: fix(v) for k, v in data["include_map"].items()}


def _parse_conf(data: dict) -> tuple[list, str]:
    """crossplane's parsed form of the scenario's own nginx.conf (not following includes)."""
    import crossplane

    if data.get("nginx_conf_inline") is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(data["nginx_conf_inline"])
        try:
            res = crossplane.parse(f.name, single=True, comments=False, check_ctx=False, check_args=False)
        finally:
            os.unlink(f.name)
        conf_dir = None
    elif isinstance(data.get("nginx_conf"), str):
        res = crossplane.parse(data["nginx_conf"], single=True, comments=False, check_ctx=False, check_args=False)
        conf_dir = str(Path(data["nginx_conf"]).parent)
    else:
        raise paths.PathError("the base scenario has no nginx_conf to edit")
    if res["errors"]:
        raise paths.PathError(f"the base nginx.conf does not parse: {res['errors'][0]['error']}")
    return res["config"][0]["parsed"], conf_dir


def base_data(sweep: Sweep) -> dict:
    try:
        data = yaml.safe_load(sweep.base.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SweepError(f"{sweep.file}:{sweep.line_of('base')}: base: cannot read {sweep.base}: {e}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{sweep.file}:{sweep.line_of('base')}: base: {sweep.base} is not a scenario mapping")
    _absolute(data, sweep.base.parent)
    for path, value in sweep.overrides.items():
        try:
            paths.set_in(data, path, copy.deepcopy(value))
        except paths.PathError as e:
            raise SweepError(f"{sweep.file}:{sweep.line_of('set', path)}: set.{path}: {e}") from None
    _absolute(data, sweep.base.parent)
    return data


def _label(levels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in levels.items())


def resolve(sweep: Sweep) -> list[Run]:
    """Every run of the sweep, in index order (point-major, then replication)."""
    base = base_data(sweep)
    conf_factors = [f for f in sweep.factors if f.is_conf]
    parsed = conf_dir = None
    if conf_factors:
        try:
            parsed, conf_dir = _parse_conf(base)
        except paths.PathError as e:
            f = conf_factors[0]
            raise SweepError(f"{sweep.file}:{f.line}: factors.{f.name}: {e}") from None
    runs: list[Run] = []
    for p, levels in enumerate(design.points(sweep)):
        data = copy.deepcopy(base)
        edited = parsed
        for f in sweep.factors:
            try:
                if f.is_conf:
                    edited = paths.edit_conf(edited, f.path, levels[f.name])
                else:
                    paths.set_in(data, f.path, copy.deepcopy(levels[f.name]))
            except paths.PathError as e:
                raise SweepError(f"{sweep.file}:{f.line}: factors.{f.name}: point {p} ({_label(levels)}): {e}") from None
        base_dir = str(sweep.base.parent)
        if conf_factors:
            import crossplane

            data.pop("nginx_conf", None)
            data["nginx_conf_inline"] = crossplane.build(edited) + "\n"
            base_dir = conf_dir or base_dir
        for r in range(sweep.replications):
            index = len(runs)
            seed = design.seed_for(sweep, p, r)
            run_data = dict(data, name=f"{sweep.name}-run-{index:04d}", seed=seed)
            text = yaml.safe_dump(run_data, sort_keys=False, allow_unicode=True)
            runs.append(Run(index, p, r, seed, dict(levels), text, base_dir))
    return runs


def _factor_for_field(sweep: Sweep, field: str):
    """The factor whose path the scenario error's field lies under (``workloads[0].rate``)."""
    norm = paths.split(field.replace("[", ".").replace("]", "")) if field and field != "(top level)" else []
    best = None
    for f in sweep.factors:
        if f.is_conf:
            if field.startswith("nginx_conf"):
                best = best or f
            continue
        fp = paths.split(f.path)
        if [str(x) for x in norm[: len(fp)]] == [str(x) for x in fp] or \
                [str(x) for x in fp[: len(norm)]] == [str(x) for x in norm]:
            best = f
    return best


def validate(sweep: Sweep, runs: list[Run]) -> None:
    """Load every point's scenario once (replications differ only in the seed); raise SweepError
    naming the sweep file, the factor's line and the run when a point makes a bad scenario."""
    from sim.cluster import scenario as scenario_mod

    seen: set[int] = set()
    for run in runs:
        if run.point in seen:
            continue
        seen.add(run.point)
        label = f"run-{run.index:04d}"
        try:
            scenario_mod.loads(run.text, filename=label, base_dir=run.base_dir)
        except scenario_mod.ScenarioError as e:
            msg = str(e)
            if msg.startswith(label + ":"):
                msg = msg.split(": ", 1)[1] if ": " in msg else msg
            field = msg.split(":", 1)[0].strip()
            f = _factor_for_field(sweep, field)
            line = f.line if f else sweep.line_of("base")
            where = f"factors.{f.name}" if f else "base"
            raise SweepError(f"{sweep.file}:{line}: {where}: run {run.index} ({_label(run.levels)}): {msg}") from None


def payload(sweep: Sweep, run: Run) -> dict:
    """What a worker gets for one run: plain data."""
    return {
        "index": run.index,
        "text": run.text,
        "base_dir": run.base_dir,
        "metrics": [(m.name, m.path, m.derived) for m in sweep.metrics],
    }


def run_one(payload: dict) -> dict:
    """Run one scenario in virtual time; return its status, error notes and kept metrics."""
    t0 = time.perf_counter()
    try:
        from clustersim.report import build_summary
        from clustersim.sweep.metrics import extract
        from clustersim.sweep.spec import Metric
        from sim.cluster import scenario as scenario_mod
        from sim.cluster.cluster import Cluster

        sc = scenario_mod.loads(payload["text"], filename=f"run-{payload['index']:04d}", base_dir=payload["base_dir"])
        cluster = Cluster(sc)
        cluster.run()
        if cluster.sampler is not None:
            cluster.sampler.sample()
        summary = build_summary(cluster)
        metrics = [Metric(name, path, 1, derived) for name, path, derived in payload["metrics"]]
        values, notes = extract(metrics, cluster, summary)
        row = {"status": "ok", "error": "; ".join(notes), **values}
    except Exception as e:  # a failed run is a row, not the end of the sweep
        text = " ".join(str(e).split())
        row = {"status": "failed", "error": f"{type(e).__name__}: {text}" if text else type(e).__name__}
    row["wall_s"] = round(time.perf_counter() - t0, 4)
    return row
