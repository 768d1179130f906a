"""Sweep files: levels, designs, seeds, and one-line errors naming the file, the line and the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustersim.cli import main
from clustersim.sweep import design, runs, spec

SWEEPS = Path(__file__).resolve().parents[2] / "scenarios" / "sweeps"
BASE = (SWEEPS.parent / "seed-example.yaml").as_posix()


def _load(body: str) -> spec.Sweep:
    return spec.loads(f"base: {BASE}\n" + body, filename="s.yaml")


def test_levels_expand_from_lists_ranges_linspace_and_log():
    sw = _load("factors:\n  a: {path: workloads.0.rate, levels: {range: [100, 400, 100]}}\n"
               "  b: {path: nodes, levels: [3, 5]}\n  c: {path: duration, levels: {log: [1, 100, 3]}}\n")
    assert [f.levels for f in sw.factors] == [(100, 200, 300, 400), (3, 5), (1, 10, 100)]
    assert len(design.points(sw)) == 4 * 2 * 3
    assert design.points(sw)[1] == {"a": 100, "b": 3, "c": 10}  # the last factor varies fastest


def test_latin_design_uses_every_stratum_once_and_is_seeded():
    body = ("design: latin\nsamples: 8\nfactors:\n  rate: {path: workloads.0.rate, levels: {uniform: [0, 800]}}\n")
    pts = design.points(_load(body))
    assert sorted(int(p["rate"] // 100) for p in pts) == list(range(8))
    assert pts == design.points(_load(body))


def test_common_seeds_repeat_across_points_and_independent_seeds_do_not():
    common = _load("replications: 2\nfactors:\n  nodes: [1, 2]\n")
    indep = _load("replications: 2\nseeds: independent\nfactors:\n  nodes: [1, 2]\n")
    assert design.seed_for(common, 0, 1) == design.seed_for(common, 1, 1) != design.seed_for(common, 0, 0)
    assert design.seed_for(indep, 0, 1) != design.seed_for(indep, 1, 1)


@pytest.mark.parametrize("body, expected", [
    ("factors: {}\n", "s.yaml:2: factors: a sweep needs at least one factor"),
    ("factors:\n  nodes: [3]\nreplications: 0\n", "s.yaml:4: replications: must be 1 or more"),
    ("factors:\n  nodes: [3]\ncolour: red\n", "s.yaml:4: colour: unknown field"),
    ("factors:\n  rate:\n    path: workloads.0.rate\n    levels: {log: [0, 10, 3]}\n",
     "s.yaml:5: factors.rate.levels: log needs positive ends"),
    ("factors:\n  nodes: [3]\nmetrics: [p98_ms]\n", "s.yaml:4: metrics[0]: unknown metric 'p98_ms'"),
    ("factors:\n  nodes: [3]\nmetrics: [nodez.node1.latency]\n", "s.yaml:4: metrics[0]: unknown metric path"),
    ("factors:\n  nodes: [3]\nobjective: p99_ms < 200\nmetrics: [p50_ms]\n",
     "s.yaml:4: objective: 'p99_ms' is not a kept metric"),
    ("design: random\nfactors:\n  nodes: [3]\n", "s.yaml:2: design: a random design needs samples"),
])
def test_bad_sweep_files_get_one_line_errors(body, expected):
    with pytest.raises(spec.SweepError) as e:
        _load(body)
    assert str(e.value).startswith(expected)
    assert "\n" not in str(e.value)


def test_a_factor_that_makes_an_invalid_scenario_names_the_factor_line_and_the_run():
    sw = _load("factors:\n  rate:\n    path: workloads.0.rate\n    levels: [100, -5]\n")
    with pytest.raises(spec.SweepError) as e:
        runs.validate(sw, runs.resolve(sw))
    assert str(e.value).startswith("s.yaml:3: factors.rate: run 1 (rate=-5): workloads[0].rate: Input should be")


def test_a_conf_factor_edits_the_upstream_balancer_and_a_missing_block_is_an_error():
    sw = _load("factors:\n  lb:\n    path: nginx:http.upstream[backend].balancer\n    levels: [round_robin, least_time header]\n")
    texts = [r.text for r in runs.resolve(sw)]
    assert "least_time" not in texts[0] and "least_time header;" in texts[1]
    bad = _load("factors:\n  lb:\n    path: nginx:http.upstream[nope].balancer\n    levels: [least_conn]\n")
    with pytest.raises(spec.SweepError, match=r"^s.yaml:3: factors.lb: point 0 \(lb=least_conn\): .*no block matches"):
        runs.resolve(bad)


def test_the_command_line_reports_a_bad_sweep_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {BASE}\nfactors:\n  rate:\n    path: workloads.0.rate\n    levels: [-3]\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clustersim: {bad}:3: factors.rate: run 0 (rate=-3): workloads[0].rate:")
    assert main(["sweep", str(SWEEPS / "capacity.yaml"), "--check"]) == 0
    assert "runs)" in capsys.readouterr().out
