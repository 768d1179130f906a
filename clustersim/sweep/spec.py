"""Sweep files (YAML) -> a validated, inert :class:`Sweep`.

A sweep is a base scenario, the factors that vary (each a path into the scenario or its
nginx.conf, with its levels), a design that picks the points to run, a number of replications,
the metrics kept per run, and optionally an objective and the load factor for capacity curves.
The format is documented in ``scenarios/README.md`` ("Sweep files") and ``docs/sweep.md``.
An invalid file raises :class:`SweepError` whose message is ``file:line: field: reason``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clustersim.sweep import paths as paths_mod
from clustersim.sweep.metrics import DERIVED
from sim.cluster.yaml_lines import read_mapping

DESIGNS = ("grid", "random", "latin")
SEED_MODES = ("common", "independent")
_TOP = {"name", "description", "seed", "base", "set", "factors", "design", "samples", "replications", "seeds",
        "metrics", "objective", "load", "plot", "retries"}
_OPS = ("<=", ">=", "==", "!=", "<", ">")


class SweepError(ValueError):
    """An invalid sweep: ``str(err)`` is ``"file:line: field: reason"``."""


@dataclass(frozen=True)
class Factor:
    """One factor: a name (its column), a path, and either discrete levels or a continuous range."""

    name: str
    path: str
    levels: tuple = ()  # discrete levels, in order
    continuous: tuple[str, float, float] | None = None  # ("uniform"|"loguniform", lo, hi), random/latin only
    line: int = 1

    @property
    def is_conf(self) -> bool:
        return self.path.startswith(paths_mod.NGINX_PREFIX)


@dataclass(frozen=True)
class Metric:
    """A kept metric: a derived one by name, or a dotted path into summary.json."""

    name: str
    path: str | None  # None for a derived metric
    line: int = 1
    derived: str | None = None  # which derived metric (clustersim.sweep.metrics.DERIVED)


@dataclass(frozen=True)
class Clause:
    metric: str
    op: str
    value: float

    def holds(self, actual) -> bool:
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            return False
        return {"<": actual < self.value, "<=": actual <= self.value, ">": actual > self.value,
                ">=": actual >= self.value, "==": actual == self.value, "!=": actual != self.value}[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Sweep:
    file: str
    name: str
    description: str
    seed: int
    base: Path  # the base scenario file
    overrides: dict  # `set`: path -> value, applied to every run
    factors: tuple[Factor, ...]
    design: str
    samples: int | None
    replications: int
    seeds: str
    metrics: tuple[Metric, ...]
    objective: tuple[Clause, ...] = ()
    objective_text: str | None = None
    load: str | None = None  # the factor that is the offered load
    plot: tuple[str, ...] = ()
    retries: int = 0
    lines: dict = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, *loc) -> int:
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return 1

    def factor(self, name: str) -> Factor:
        return next(f for f in self.factors if f.name == name)


def _line_map(node, path=(), out=None) -> dict:
    if out is None:
        out = {}
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[(*path, k.value)] = k.start_mark.line + 1
            _line_map(v, (*path, k.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, (*path, i), out)
    return out


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _tidy(x: float, integral: bool):
    """Generated levels: 4 significant digits, ints when both ends of the range are ints."""
    x = float(f"{x:.4g}")
    return int(round(x)) if integral else x


def levels_of(spec, err) -> tuple[tuple, tuple | None]:
    """A factor's ``levels`` value -> (discrete levels, continuous range or None)."""
    if isinstance(spec, list):
        if not spec:
            err("needs at least one level")
        return tuple(spec), None
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, args), = spec.items()
        if kind in ("range", "linspace", "log", "uniform", "loguniform"):
            n_args = 2 if kind in ("uniform", "loguniform") else (2, 3) if kind == "range" else 3
            if not isinstance(args, list) or len(args) not in (n_args if isinstance(n_args, tuple) else (n_args,)) \
                    or not all(_number(a) for a in args):
                shape = {"range": "[lo, hi] or [lo, hi, step]", "linspace": "[lo, hi, n]", "log": "[lo, hi, n]",
                         "uniform": "[lo, hi]", "loguniform": "[lo, hi]"}[kind]
                err(f"{kind} takes {shape} (numbers)")
            lo, hi = args[0], args[1]
            integral = isinstance(lo, int) and isinstance(hi, int)
            if kind in ("uniform", "loguniform"):
                if not lo < hi or (kind == "loguniform" and lo <= 0):
                    err(f"{kind} needs lo < hi{' and lo > 0' if kind == 'loguniform' else ''}")
                return (), (kind, float(lo), float(hi))
            if kind == "range":
                step = args[2] if len(args) == 3 else 1
                if step <= 0 or hi < lo:
                    err("range needs lo <= hi and a positive step")
                n = int(math.floor((hi - lo) / step + 1e-9)) + 1
                if n > 100_000:
                    err(f"range makes {n} levels")
                integral = integral and isinstance(step, int)
                return tuple(_tidy(lo + k * step, integral) for k in range(n)), None
            n = args[2]
            if not isinstance(n, int) or n < 1 or n > 100_000:
                err(f"{kind}: n must be a whole number of levels, 1 or more")
            if kind == "log" and (lo <= 0 or hi <= 0):
                err("log needs positive ends")
            if n == 1:
                return (_tidy(lo, integral),), None
            if kind == "log":
                vals = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * k / (n - 1)) for k in range(n)]
            else:
                vals = [lo + (hi - lo) * k / (n - 1) for k in range(n)]
            out = tuple(dict.fromkeys(_tidy(v, integral) for v in vals))
            return out, None
    err("levels are a list, or one of {range: [lo, hi, step]}, {linspace: [lo, hi, n]}, {log: [lo, hi, n]}, "
        "{uniform: [lo, hi]}, {loguniform: [lo, hi]}")
    raise AssertionError  # err raises


_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.\[\]:-]*)\s*(<=|>=|==|!=|<|>)\s*([-+0-9.eE]+)\s*$")


def parse_objective(text: str, err) -> tuple[Clause, ...]:
    clauses = []
    for part in re.split(r"\band\b", text):
        m = _CLAUSE.match(part)
        if not m:
            err(f"cannot read {part.strip()!r}: write clauses like 'p99_ms < 200' joined by 'and'")
        try:
            value = float(m.group(3))
        except ValueError:
            err(f"{m.group(3)!r} is not a number")
        clauses.append(Clause(m.group(1), m.group(2), value))
    return tuple(clauses)


def load(path: str | Path) -> Sweep:
    """Read and validate a sweep file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(f"{path}: cannot read: {e.strerror}") from None
    return loads(text, filename=str(path), base_dir=path.parent)


def loads(text: str, *, filename: str = "<sweep>", base_dir: str | Path = ".") -> Sweep:
    base_dir = Path(base_dir)
    root, data = read_mapping(text, filename, "sweep", SweepError)
    lines = _line_map(root)

    def line(*loc) -> int:
        loc = tuple(loc)
        while loc:
            if loc in lines:
                return lines[loc]
            loc = loc[:-1]
        return 1

    def fail(loc: tuple, msg: str):
        name = "".join(f"[{p}]" if isinstance(p, int) else ("." if i else "") + str(p) for i, p in enumerate(loc))
        raise SweepError(f"{filename}:{line(*loc)}: {name or '(top level)'}: {msg}")

    for key in data:
        if key not in _TOP:
            fail((key,), "unknown field")

    def get(key, kind, default, check=None):
        v = data.get(key, default)
        if v is default:
            return v
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            fail((key,), f"expected {names}, got {type(v).__name__}")
        if check and not check(v):
            fail((key,), check.__doc__ or "invalid value")
        return v

    if "base" not in data:
        fail(("base",), "required: the base scenario file")
    base_ref = get("base", str, None)
    base = (base_dir / base_ref) if not Path(base_ref).is_absolute() else Path(base_ref)
    if not base.is_file():
        fail(("base",), f"scenario file not found: {base}")
    seed = get("seed", int, 1)
    replications = get("replications", int, 1)
    if replications < 1:
        fail(("replications",), "must be 1 or more")
    retries = get("retries", int, 0)
    if retries < 0:
        fail(("retries",), "must not be negative")
    seeds = get("seeds", str, "common")
    if seeds not in SEED_MODES:
        fail(("seeds",), f"one of {', '.join(SEED_MODES)}")
    design = get("design", str, "grid")
    if design not in DESIGNS:
        fail(("design",), f"one of {', '.join(DESIGNS)}")
    samples = get("samples", int, None)
    if design == "grid" and samples is not None:
        fail(("samples",), "a grid runs every combination; samples is for random and latin designs")
    if design != "grid" and (samples is None or samples < 1):
        fail(("samples" if samples is not None else "design",), f"a {design} design needs samples: N (1 or more)")

    overrides = get("set", dict, {})
    for k in overrides:
        if not isinstance(k, str):
            fail(("set", k), "a path is a string")
        try:
            paths_mod.split(k)
        except paths_mod.PathError as e:
            fail(("set", k), str(e))
        if k.startswith(paths_mod.NGINX_PREFIX):
            fail(("set", k), "set applies to the scenario; vary the nginx.conf with a factor")

    factors: list[Factor] = []
    raw_factors = get("factors", dict, {})
    for fname, fspec in raw_factors.items():
        loc = ("factors", fname)
        if not isinstance(fname, str) or not fname:
            fail(loc, "a factor's name is a string")
        if isinstance(fspec, dict) and "path" in fspec:
            extra = set(fspec) - {"path", "levels"}
            if extra:
                fail((*loc, sorted(extra)[0]), "unknown field (a factor has path and levels)")
            fpath = fspec["path"]
            if "levels" not in fspec:
                fail(loc, "a factor needs levels")
            lspec, lloc = fspec["levels"], (*loc, "levels")
        else:
            fpath, lspec, lloc = fname, fspec, loc
        if not isinstance(fpath, str):
            fail((*loc, "path"), "expected a dotted path")
        try:
            paths_mod.conf_segments(fpath) if fpath.startswith(paths_mod.NGINX_PREFIX) else paths_mod.split(fpath)
        except paths_mod.PathError as e:
            fail((*loc, "path"), str(e))
        levels, cont = levels_of(lspec, lambda msg, lloc=lloc: fail(lloc, msg))
        if cont is not None and design == "grid":
            fail(lloc, f"{cont[0]} is continuous: use it with design random or latin, or give levels for a grid")
        if fname in ("run", "point", "replication", "seed", "status", "error", "wall_s"):
            fail(loc, f"{fname!r} is a column of results.csv; name the factor otherwise")
        factors.append(Factor(fname, fpath, tuple(levels), cont, line(*loc)))
    if not factors:
        fail(("factors",), "a sweep needs at least one factor")

    metrics: list[Metric] = []
    raw_metrics = get("metrics", list, ["p50_ms", "p95_ms", "p99_ms", "error_ratio", "throughput_rps"])
    for i, m in enumerate(raw_metrics):
        loc = ("metrics", i)
        if isinstance(m, str):
            name, mpath = m, m
        elif isinstance(m, dict) and set(m) <= {"name", "path"} and "path" in m:
            mpath = m["path"]
            name = m.get("name", mpath)
        else:
            fail(loc, "a metric is a derived name or a summary path, or {name: ..., path: ...}")
        if not isinstance(name, str) or not isinstance(mpath, str):
            fail(loc, "metric names and paths are strings")
        which = mpath if mpath in DERIVED else None
        if which is not None:
            mpath = None
        else:
            head = mpath.split(".")[0]
            if "." not in mpath:
                fail(loc, f"unknown metric {mpath!r}: derived metrics are {', '.join(DERIVED)}; "
                     "a summary path is dotted (nodes.node1.latency.p99_ms)")
            if head not in ("scenario", "seed", "duration_s", "nodes", "backends", "faults", "replication",
                            "not_simulated"):
                fail(loc, f"unknown metric path {mpath!r}: summary.json has no {head!r}")
        if name in {f.name for f in factors} or any(x.name == name for x in metrics):
            fail(loc, f"the column {name!r} is already taken")
        metrics.append(Metric(name, mpath, line(*loc), which))
    names = {m.name for m in metrics}

    objective_text = get("objective", str, None)
    objective: tuple[Clause, ...] = ()
    if objective_text is not None:
        objective = parse_objective(objective_text, lambda msg: fail(("objective",), msg))
        for c in objective:
            if c.metric not in names:
                fail(("objective",), f"{c.metric!r} is not a kept metric ({', '.join(sorted(names))})")

    load = get("load", str, None)
    if load is None:
        rate_like = [f.name for f in factors if str(paths_mod.split(f.path)[-1]) == "rate"]
        load = rate_like[0] if len(rate_like) == 1 else None
    elif load not in {f.name for f in factors}:
        fail(("load",), f"{load!r} is not a factor ({', '.join(f.name for f in factors)})")
    if load is not None:
        lf = next(f for f in factors if f.name == load)
        if lf.continuous is None and not all(_number(v) for v in lf.levels):
            fail(("load",) if "load" in data else ("factors", load), "the load factor's levels must be numbers")
    plot = get("plot", list, [c.metric for c in objective] or [metrics[0].name])
    for i, p in enumerate(plot):
        if p not in names:
            fail(("plot", i), f"{p!r} is not a kept metric")

    return Sweep(
        file=filename,
        name=get("name", str, None) or Path(filename).stem,
        description=get("description", str, ""),
        seed=seed,
        base=base.resolve(),
        overrides=dict(overrides),
        factors=tuple(factors),
        design=design,
        samples=samples,
        replications=replications,
        seeds=seeds,
        metrics=tuple(metrics),
        objective=objective,
        objective_text=objective_text,
        load=load,
        plot=tuple(plot),
        retries=retries,
        lines=lines,
    )
