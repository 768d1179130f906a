"""End to end: ``clustersim serve`` in a subprocess on its own loopback addresses, each locust file
run headless against it in another subprocess (locust is never imported here), and the checkers'
verdicts. One test proves a checker fails when the counters disagree with what the users sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from clustersim.serve_cmd import LOADTESTS, ROOT, locust_command, start_serve, stop_serve

_next = iter(range(1, 250))


def _address_base() -> str:
    return f"127.{50 + os.getpid() % 50}.{next(_next)}.11"


@contextmanager
def served(name: str, *extra: str):
    scenario = str(ROOT / LOADTESTS[name][0])
    proc, info = start_serve(scenario, ["--control-port", "0", "--address-base", _address_base(), *extra])
    try:
        yield info
    finally:
        code = stop_serve(proc)
        assert code == 0, "".join(proc.error_lines)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _locust(name: str, host: str, run_time: str, users: int = 6):
    cmd = locust_command(str(ROOT / LOADTESTS[name][1]), host, users=users, spawn_rate=None, run_time=run_time)
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _report(output: str) -> dict:
    lines = [ln for ln in output.splitlines() if ln.startswith("CHECK-REPORT ")]
    assert lines, output
    return json.loads(lines[-1].removeprefix("CHECK-REPORT "))


def _run(name: str, run_time: str, users: int = 6) -> tuple[int, dict]:
    with served(name) as info:
        proc = _locust(name, info["control"], run_time, users)
        out, _ = proc.communicate(timeout=60)
    return proc.returncode, _report(out)


def test_loadtest_command_serves_runs_locust_and_passes_traffic_counters():
    cmd = [sys.executable, "-m", "clustersim.serve_cmd", "loadtest", "traffic_counters", "--time", "3s",
           "--users", "6", "--address-base", _address_base()]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=90)
    report = _report(done.stdout)
    assert (done.returncode, report["passed"], report["failures"]) == (0, True, [])
    assert report["facts"]["requests"] > 0
    assert "load test traffic_counters: PASSED" in done.stdout
    assert "Aggregated" in done.stdout + done.stderr  # locust's stats (it logs them to stderr)


def test_traffic_counters_checker_fails_on_requests_the_users_did_not_send():
    with served("traffic_counters") as info:
        node1 = info["nodes"][0]
        data = next(b["url"] for b in node1["listens"] if b["config_port"] == 8080)
        api = node1["api"][0]["url"] + "/9/http/server_zones/app"
        proc = _locust("traffic_counters", info["control"], "4s")

        def app_requests() -> int:
            with urllib.request.urlopen(api, timeout=5) as r:
                return json.loads(r.read())["requests"]

        while app_requests() == 0:  # the users are running: the checker has its baseline
            assert proc.poll() is None
        for _ in range(3):
            req = urllib.request.Request(data + "/ping", headers={"Host": "app.example.com"})
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200
        out, _ = proc.communicate(timeout=60)
    report = _report(out)
    assert (proc.returncode, report["passed"]) == (1, False)
    assert any(f.startswith("node1 app requests: expected") for f in report["failures"]), report["failures"]
    assert "CHECK FAIL" in out


def test_keyval_sync_load_test_converges_to_the_last_writes():
    code, report = _run("keyval_sync", "4s")
    assert (code, report["failures"]) == (0, [])
    assert report["facts"]["writes"] > 0 and report["facts"]["keys"] > 0


def test_upstream_churn_load_test_keeps_changed_servers_out_of_rotation():
    code, report = _run("upstream_churn", "4s", users=8)
    assert (code, report["failures"]) == (0, [])
    assert sum(report["facts"]["operations"].values()) > 0


def test_chaos_partition_load_test_sees_divergence_and_convergence():
    code, report = _run("chaos_partition", "6s")
    assert (code, report["failures"]) == (0, [])
    assert report["facts"]["cut_off_observations"] > 0 and report["facts"]["max_pending"] > 0


def test_serve_stops_cleanly_on_ctrl_c_and_reports_sim_time():
    scenario = str(ROOT / LOADTESTS["traffic_counters"][0])
    proc, info = start_serve(scenario, ["--control-port", "0", "--address-base", _address_base()])
    assert [n["name"] for n in info["nodes"]] == ["node1", "node2", "node3"]
    assert stop_serve(proc) == 0
    rest = []
    while (line := proc.output_lines.get(timeout=5)) is not None:
        rest.append(line)
    stopped = json.loads(next(ln for ln in rest if ln.startswith("{")))
    assert stopped["event"] == "stopped" and stopped["sim_ms"] > 0


def test_serve_refuses_a_port_in_use_naming_node_address_and_port():
    base = _address_base()
    scenario = str(ROOT / LOADTESTS["traffic_counters"][0])
    first, _ = start_serve(scenario, ["--control-port", "0", "--address-base", base])
    try:
        with pytest.raises(RuntimeError, match=rf"node node1: cannot listen on {base}:8080 \(http\)"):
            start_serve(scenario, ["--control-port", "0", "--address-base", base])
    finally:
        assert stop_serve(first) == 0


def test_every_load_test_has_its_scenario_and_locust_file():
    for scenario, locustfile in LOADTESTS.values():
        assert Path(ROOT / scenario).is_file() and Path(ROOT / locustfile).is_file()
