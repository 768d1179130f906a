"""What a sweep writes: rows as they finish, then results.csv / results.parquet, points.csv, knee.csv.

Rows are appended to ``rows.jsonl`` the moment a run finishes (one JSON object a line, flushed),
so an interrupted sweep loses nothing and ``--resume`` knows what is done. The tables are then
written from those rows sorted by run index, which is why they do not depend on the engine, the
number of workers or the order in which runs finished. Numbers are written in Python's shortest
round-trip form; an empty cell is a missing value.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import orjson

ROWS = "rows.jsonl"


def columns(sweep) -> list[str]:
    return ["run", "point", "replication", "seed", *(f.name for f in sweep.factors), "status", "error",
            *(m.name for m in sweep.metrics), "wall_s"]


def append_row(f, row: dict) -> None:
    f.write(orjson.dumps(row) + b"\n")
    f.flush()


def read_rows(out: Path) -> dict[int, dict]:
    """The rows already in DIR, by run index (a torn last line from a killed sweep is ignored)."""
    path = out / ROWS
    rows: dict[int, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("run"), int):
            rows[row["run"]] = row
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def write_csv(path: Path, cols: list[str], records: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in records:
            w.writerow([_cell(r.get(c)) for c in cols])
    return path


def write_parquet(path: Path, cols: list[str], records: list[dict]) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the [sweep] extra is not installed
        return None
    arrays = {}
    for c in cols:
        vals = [r.get(c) for r in records]
        present = [v for v in vals if v is not None]
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            arrays[c] = pa.array(vals, type=pa.int64())
        elif present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            arrays[c] = pa.array([None if v is None else float(v) for v in vals], type=pa.float64())
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in vals], type=pa.string())
    pq.write_table(pa.table(arrays), path)
    return path
