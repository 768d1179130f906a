"""A sweep gives byte-identical results.csv (but the wall-time column) whatever runs it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from clustersim.sweep import spec
from clustersim.sweep.engine import RunFailure, execute
from clustersim.sweep.runner import run_sweep

SWEEPS = Path(__file__).resolve().parents[2] / "scenarios" / "sweeps"


def _without_wall(path: Path) -> str:
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0][-1] == "wall_s"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(r[:-1] for r in rows)
    return out.getvalue()


def _quiet(*_a):
    pass


def test_results_are_identical_on_one_and_two_local_workers_and_on_dask(tmp_path):
    sw = spec.load(SWEEPS / "tiny.yaml")
    run_sweep(sw, tmp_path / "one", workers=1, progress=False, log=_quiet)
    run_sweep(sw, tmp_path / "two", workers=2, progress=False, log=_quiet)
    run_sweep(sw, tmp_path / "dask", engine="dask", workers=2, progress=False, log=_quiet)
    one = _without_wall(tmp_path / "one" / "results.csv")
    assert one.count("\n") == 1 + 8
    assert _without_wall(tmp_path / "two" / "results.csv") == one
    assert _without_wall(tmp_path / "dask" / "results.csv") == one
    assert ",failed," not in one


def test_a_run_reproduces_from_its_resolved_scenario_and_seed(tmp_path):
    from clustersim.sweep import runs

    sw = spec.load(SWEEPS / "tiny.yaml")
    report = run_sweep(sw, tmp_path, workers=1, progress=False, log=_quiet)
    row = report["rows"][5]
    text = (tmp_path / "runs" / "run-0005.yaml").read_text()
    assert f"seed: {row['seed']}" in text
    again = runs.run_one({"index": 5, "text": text, "base_dir": str(tmp_path / "runs"),
                          "metrics": [(m.name, m.path, m.derived) for m in sw.metrics]})
    assert {k: v for k, v in again.items() if k != "wall_s"} == \
        {k: v for k, v in row.items() if k in again and k != "wall_s"}


def _square(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


@pytest.mark.parametrize("engine", ["local"])
def test_execute_yields_every_result_and_a_failure_record_for_a_raising_run(engine):
    got = dict(execute(_square, range(6), engine=engine, workers=2, progress=False, skip={5}))
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert got[4] == 16
    assert isinstance(got[3], RunFailure)
    assert got[3].error == "ValueError: three is not allowed"
    assert "three is not allowed" in got[3].traceback


def test_a_scenario_that_fails_at_run_time_is_a_failed_row_and_resume_reruns_only_it(tmp_path):
    sw = spec.load(SWEEPS / "tiny.yaml")
    out = tmp_path / "out"
    report = run_sweep(sw, out, workers=1, progress=False, log=_quiet)
    # pretend run 2 failed: its row is rewritten as a failure, and --resume runs it (only it) again
    rows = (out / "rows.jsonl").read_text().splitlines()
    import orjson

    bad = [orjson.loads(r) for r in rows]
    for r in bad:
        if r["run"] == 2:
            r.update(status="failed", error="RuntimeError: boom")
    (out / "rows.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in bad))
    seen = []
    again = run_sweep(sw, out, workers=1, progress=False, resume=True, log=seen.append)
    assert seen == ["resuming: 7 of 8 runs already done"]
    assert not again["failed"]
    assert _without_wall(out / "results.csv").count(",ok,") == 8
    assert [r["p99_ms"] for r in again["rows"]] == [r["p99_ms"] for r in report["rows"]]


def test_an_output_directory_with_rows_needs_resume(tmp_path):
    sw = spec.load(SWEEPS / "tiny.yaml")
    (tmp_path / "rows.jsonl").write_text('{"run": 0, "status": "ok"}\n')
    with pytest.raises(spec.SweepError, match="--resume"):
        run_sweep(sw, tmp_path, workers=1, progress=False, log=_quiet)
