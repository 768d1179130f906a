"""The command line on the shipped scenarios: outputs, determinism, verdicts, errors."""

import json
import os
from pathlib import Path

import pytest

from clustersim.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "scenarios" / "seed-example.yaml"
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed")
    assert main(["run", str(SEED), "--out", str(out)]) == 0
    return out


def test_run_writes_summary_timeseries_plot_and_resolved_scenario(seed_run):
    names = sorted(p.name for p in seed_run.iterdir() if p.is_file())
    assert names == ["caches.csv", "faults.json", "peers.csv", "report.html", "run.json", "scenario.resolved.yaml",
                     "summary.json", "timeseries.csv", "traffic.png"]
    summary = json.loads((seed_run / "summary.json").read_text())
    assert summary["seed"] == 42 and summary["duration_s"] == 60.0
    assert set(summary["nodes"]) == {"node1", "node2", "node3"}
    rows = (seed_run / "timeseries.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 60  # header, then one row per node per second


def test_summary_holds_moving_cache_and_health_check_counters(seed_run):
    summary = json.loads((seed_run / "summary.json").read_text())
    http = summary["nodes"]["node1"]["api"]["http"]
    cache = http["caches"]["cache_backend"]
    assert cache["hit"]["responses"] > 0 and cache["miss"]["responses"] > 0
    peers = {p["name"]: p for p in http["upstreams"]["backend"]["peers"]}
    assert peers["backend1.example.com:80"]["health_checks"]["checks"] > 0
    # backend2 is down from 20 s to 40 s in the scenario: its health checks saw it
    assert peers["backend2.example.com:80"]["health_checks"]["unhealthy"] == 1


def test_same_seed_gives_a_byte_identical_summary(seed_run, tmp_path):
    assert main(["run", str(SEED), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.json").read_bytes() == (seed_run / "summary.json").read_bytes()
    assert (tmp_path / "timeseries.csv").read_bytes() == (seed_run / "timeseries.csv").read_bytes()


def test_another_seed_gives_other_numbers(seed_run, tmp_path):
    assert main(["run", str(SEED), "--seed", "7", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.json").read_bytes() != (seed_run / "summary.json").read_bytes()


def test_printed_summary_matches_the_golden_output(seed_run, capsys, tmp_path):
    main(["run", str(SEED), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    table = "\n".join(line for line in out.splitlines() if not line.startswith("wrote "))
    golden = GOLDEN / "seed-example.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(table + "\n")
    assert table + "\n" == golden.read_text()


def test_a_failed_expectation_makes_the_exit_code_one(tmp_path):
    text = SEED.read_text().replace('op: ">", value: 10000', 'op: ">", value: 100000000')
    sc = tmp_path / "strict.yaml"
    sc.write_text(text.replace("configs/seed-example.conf", str(ROOT / "scenarios/configs/seed-example.conf")))
    assert main(["run", str(sc), "--out", str(tmp_path / "out")]) == 1
    verdicts = json.loads((tmp_path / "out" / "summary.json").read_text())["expectations"]
    assert [v["passed"] for v in verdicts] == [False, True]


def test_check_reports_a_bad_scenario_with_file_line_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nnodes: 2\nworkloads:\n  - rate: -5\n")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: workloads[0].rate:" in err


def test_check_reports_a_bad_nginx_conf_with_its_file_and_line(tmp_path, capsys):
    (tmp_path / "bad.conf").write_text("http {\n  upstream u { server 10.0.0.1 weight=0; }\n}\n")
    sc = tmp_path / "s.yaml"
    sc.write_text("nginx_conf: bad.conf\n")
    assert main(["check", str(sc)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.conf'}:2:" in err and "weight=0" in err


MONITORING = sorted((ROOT / "scenarios" / "monitoring").glob("*.yaml"))


def test_there_are_at_least_six_monitoring_scenarios():
    assert len(MONITORING) >= 6


@pytest.mark.parametrize("path", MONITORING, ids=lambda p: p.stem)
def test_each_monitoring_scenario_shows_its_symptom_and_writes_its_scrapes(path, tmp_path, capsys):
    assert main(["run", str(path), "--out", str(tmp_path)]) == 0, capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["expectations"] and all(v["passed"] for v in summary["expectations"])
    assert summary["monitoring"]["interval_s"] == 15.0
    assert (tmp_path / "scrapes.prom").stat().st_size > 0
    assert (tmp_path / "scrapes.om.txt").read_text().endswith("# EOF\n")
