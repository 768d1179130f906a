"""A run's data, in memory or read back from its output directory, as columnar tables.

:class:`RunData` is what every figure is drawn from: the sampler's three tables (nodes, peers,
caches), the fault log and the scheduled faults, the replication probes' divergence series and
verdicts, the expectations' verdicts and the final summary. :func:`run_data` builds it from a
:class:`sim.cluster.cluster.Cluster` that has run (notebooks, the CLI); :func:`load_run` reads it
from the files ``clustersim run`` writes (``clustersim report DIR``). Both give the same values,
so a report rebuilt from files equals the one written after the run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import yaml

from sim.checks.metrics import CACHE_COLUMNS, COLUMNS, PEER_COLUMNS

#: Columns that hold text; every other column is a number (NaN where the model had none).
TEXT_COLUMNS = frozenset({"node", "kind", "upstream", "peer", "server", "state", "cache"})
#: Columns that hold True/False (or nothing); read as 1.0/0.0/NaN.
FLAG_COLUMNS = frozenset({"backup", "cold", "health_last_passed"})


class DataError(ValueError):
    """A run's file cannot be read: the message names the file, the line and the field."""


class Table:
    """Named numpy columns of equal length: text columns are object arrays, the rest floats."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns
        self.n = len(next(iter(columns.values()))) if columns else 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def where(self, **equal) -> Table:
        """The rows whose columns equal the given values."""
        mask = np.ones(self.n, dtype=bool)
        for k, v in equal.items():
            mask &= self.columns[k] == v
        return Table({k: c[mask] for k, c in self.columns.items()})

    def unique(self, name: str) -> list:
        """The distinct values of a column, in the order they first appear."""
        col = self.columns.get(name)
        if col is None or not len(col):
            return []
        _, first = np.unique(col.astype(str), return_index=True)
        return [col[i] for i in sorted(first)]

    @classmethod
    def empty(cls, names) -> Table:
        return cls({n: np.array([], dtype=object if n in TEXT_COLUMNS else float) for n in names})

    @classmethod
    def from_tuples(cls, rows: list, names) -> Table:
        """Rows of Python values (None where absent), as the sampler records them."""
        if not rows:
            return cls.empty(names)
        cols = list(zip(*rows, strict=True))
        out = {}
        for name, values in zip(names, cols, strict=True):
            arr = np.array(values, dtype=object)
            if name not in TEXT_COLUMNS:
                arr[arr == None] = np.nan  # noqa: E711 (element-wise comparison)
                arr = arr.astype(float)
            out[name] = arr
        return cls(out)


@dataclass
class RunData:
    """Everything the report shows about one run."""

    name: str
    seed: int
    duration_s: float
    description: str = ""
    label: str = ""  # what the run is called in a comparison (its directory name)
    command: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    rows: Table = field(default_factory=lambda: Table.empty(COLUMNS))
    peers: Table = field(default_factory=lambda: Table.empty(PEER_COLUMNS))
    caches: Table = field(default_factory=lambda: Table.empty(CACHE_COLUMNS))
    fault_log: list[tuple[float, str, str]] = field(default_factory=list)  # (time_s, action, note)
    scheduled: list[dict] = field(default_factory=list)  # the scenario's faults, times in seconds
    divergence: dict[str, Table] = field(default_factory=dict)  # zone -> time_s, divergent_keys, nodes_up
    replication: dict[str, dict] = field(default_factory=dict)  # zone -> the checker's summary
    expectations: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    sample_interval_s: float = 1.0

    def node_rows(self, node: str) -> Table:
        return self.rows.where(node=node)


DIVERGENCE_COLUMNS = ("time_s", "divergent_keys", "nodes_up")


def scheduled_faults(model_faults) -> list[dict]:
    """The scenario's fault list as plain data, times in seconds (what faults.json holds)."""
    out = []
    for f in model_faults:
        d = f.model_dump(mode="json", exclude_none=True) if hasattr(f, "model_dump") else dict(f)
        for key in ("at", "duration", "latency", "offset", "stagger"):
            if isinstance(d.get(key), int | float):
                d[key + "_s"] = round(d.pop(key) / 1000.0, 3)
        out.append(d)
    return out


def divergence_series(cluster) -> dict[str, list[tuple[float, int, int]]]:
    """Each replication probe's divergence steps in seconds, closed with a point at the end."""
    end = cluster.env.now
    out = {}
    for (zone, _side), probe in cluster.replication_probes.items():
        pts = [(round(ms / 1000.0, 3), n, up) for ms, n, up in probe.series]
        if pts and pts[-1][0] < round(end / 1000.0, 3):
            pts.append((round(end / 1000.0, 3), pts[-1][1], pts[-1][2]))
        out[zone] = pts
    return out


def run_data(cluster, summary: dict | None = None, verdicts: list[dict] | None = None,
             command: list[str] | None = None, label: str = "") -> RunData:
    """The data of a cluster that has run (in virtual time or live). ``summary`` (from
    :func:`clustersim.report.build_summary`) adds the final API objects and the verdicts."""
    sc = cluster.scenario
    sampler = cluster.sampler
    rows = [tuple(r.get(c) for c in COLUMNS) for r in sampler.rows] if sampler else []
    summary = summary or {}  # without it, the figures are all there but not the API tables
    replication = summary.get("replication") or cluster.replication_reports()
    return RunData(
        name=sc.name,
        seed=cluster.seed,
        duration_s=round(cluster.env.now / 1000.0, 3),
        description=sc.model.description or "",
        label=label or sc.name,
        command=list(command or []),
        nodes=list(cluster.nodes),
        rows=Table.from_tuples(rows, COLUMNS),
        peers=Table.from_tuples(sampler.peer_rows if sampler else [], PEER_COLUMNS),
        caches=Table.from_tuples(sampler.cache_rows if sampler else [], CACHE_COLUMNS),
        fault_log=[(round(t / 1000.0, 3), a, n) for t, a, n in cluster.fault_log],
        scheduled=scheduled_faults(sc.model.faults),
        divergence={z: Table.from_tuples(pts, DIVERGENCE_COLUMNS) for z, pts in divergence_series(cluster).items()},
        replication=replication,
        expectations=list(verdicts if verdicts is not None else summary.get("expectations", [])),
        summary=summary,
        sample_interval_s=sc.model.sample_interval / 1000.0,
    )


# ---------------------------------------------------------------------------------------------
# reading a run's directory


def _read_json(path: Path):
    try:
        return orjson.loads(path.read_bytes())
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        line = e.doc[: e.pos].count("\n") + 1 if isinstance(e.doc, str) else 1
        raise DataError(f"{path}:{line}: not valid JSON: {e.msg}") from None


def _flag(text: str, path: Path, line: int, name: str) -> float:
    if text == "":
        return np.nan
    if text in ("True", "true", "1"):
        return 1.0
    if text in ("False", "false", "0"):
        return 0.0
    raise DataError(f"{path}:{line}: {name}: expected True or False, got {text!r}")


def read_csv(path: Path, names, required=("time_s", "node")) -> Table:
    """A CSV written by the report, with the columns ``names`` (missing ones read as empty)."""
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            body = list(reader)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a CSV file: {e}") from None
    if header is None:
        raise DataError(f"{path}:1: empty file (expected a header line)")
    for r in required:
        if r not in header:
            raise DataError(f"{path}:1: {r}: missing column")
    index = {h: i for i, h in enumerate(header)}
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} fields, found {len(row)}")
    cols = list(zip(*body, strict=True)) if body else [()] * len(header)
    out = {}
    for name in names:
        i = index.get(name)
        if i is None:
            out[name] = np.full(len(body), np.nan) if name not in TEXT_COLUMNS else np.full(len(body), "", dtype=object)
            continue
        raw = cols[i]
        if name in TEXT_COLUMNS:
            out[name] = np.array(raw, dtype=object)
        elif name in FLAG_COLUMNS:
            out[name] = np.array([_flag(v, path, ln, name) for ln, v in enumerate(raw, start=2)], dtype=float)
        else:
            arr = np.array(raw, dtype=object)
            arr[arr == ""] = "nan"
            try:
                out[name] = arr.astype(float)
            except ValueError:
                for ln, v in enumerate(raw, start=2):
                    try:
                        float(v or "nan")
                    except ValueError:
                        raise DataError(f"{path}:{ln}: {name}: not a number: {v!r}") from None
                raise
    return Table(out)


def load_run(directory: str | Path, label: str | None = None) -> RunData:
    """Read what ``clustersim run`` (or ``serve``) wrote into ``directory``."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory")
    summary_path = d / "summary.json"
    if not summary_path.exists():
        raise DataError(f"{summary_path}: missing (is {d} the output directory of a run?)")
    summary = _read_json(summary_path)
    if not isinstance(summary, dict) or "scenario" not in summary:
        raise DataError(f"{summary_path}:1: scenario: missing (not a run summary)")
    run = _read_json(d / "run.json") if (d / "run.json").exists() else {}
    faults = _read_json(d / "faults.json") if (d / "faults.json").exists() else {}
    scheduled = faults.get("scheduled") if isinstance(faults, dict) else None
    if scheduled is None:
        scheduled = _scheduled_from_resolved(d / "scenario.resolved.yaml")
    log_entries = faults.get("log") if isinstance(faults, dict) and "log" in faults else summary.get("faults", [])
    fault_log = []
    for i, e in enumerate(log_entries or []):
        try:
            fault_log.append((float(e["at_s"]), str(e["action"]), str(e.get("note", ""))))
        except (KeyError, TypeError, ValueError):
            where = d / "faults.json" if faults else summary_path
            raise DataError(f"{where}: faults[{i}]: expected at_s, action and note") from None
    ts = d / "timeseries.csv"
    rows = read_csv(ts, COLUMNS) if ts.exists() else Table.empty(COLUMNS)
    peers = read_csv(d / "peers.csv", PEER_COLUMNS) if (d / "peers.csv").exists() else Table.empty(PEER_COLUMNS)
    caches = read_csv(d / "caches.csv", CACHE_COLUMNS) if (d / "caches.csv").exists() else Table.empty(CACHE_COLUMNS)
    divergence = {}
    rep_path = d / "replication.json"
    if rep_path.exists():
        rep = _read_json(rep_path)
        for zone, pts in (rep.get("divergence") or {}).items():
            try:
                divergence[zone] = Table.from_tuples([tuple(p) for p in pts], DIVERGENCE_COLUMNS)
            except (TypeError, ValueError):
                raise DataError(f"{rep_path}: divergence.{zone}: expected [time_s, divergent_keys, nodes_up] rows") from None
    nodes = list(summary.get("nodes", {})) or [str(n) for n in rows.unique("node")]
    return RunData(
        name=str(summary["scenario"]),
        seed=summary.get("seed", 0),
        duration_s=float(summary.get("duration_s") or 0.0),
        description=run.get("description", ""),
        label=label or d.resolve().name,
        command=list(run.get("command", [])),
        nodes=nodes,
        rows=rows,
        peers=peers,
        caches=caches,
        fault_log=fault_log,
        scheduled=scheduled,
        divergence=divergence,
        replication=summary.get("replication", {}),
        expectations=summary.get("expectations", []),
        summary=summary,
        sample_interval_s=float(run.get("sample_interval_s", 1.0)),
    )


def _scheduled_from_resolved(path: Path) -> list[dict]:
    """Older run directories have no faults.json: take the faults from the resolved scenario."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(f"{path}:{mark.line + 1 if mark else 1}: YAML syntax: {getattr(e, 'problem', e)}") from None
    out = []
    for f in data.get("faults") or []:
        if isinstance(f, dict):
            f = dict(f)
            for key in ("at", "duration"):
                if isinstance(f.get(key), int | float):
                    f[key + "_s"] = round(f.pop(key) / 1000.0, 3)
            out.append(f)
    return out
