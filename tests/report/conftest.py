"""A small chaos run shared by the report tests: every kind of band the timeline draws."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: 3 nodes of the seed example's nginx.conf, 30 s, and faults of five kinds: a backend outage
#: and a node crash that heal, a reload (an instant), a clock offset and a partition.
FAULT_SCENARIO = f"""
name: report-chaos
description: faults of five kinds on three nodes, for the report tests
seed: 5
duration: 30s
sample_interval: 1s
nginx_conf: {ROOT / 'scenarios' / 'configs' / 'seed-example.conf'}
nodes: 3
backend_defaults:
  service_time: {{dist: lognormal, mean: 20, sigma: 0.5}}
  cache_max_age: 5s
workloads:
  - {{name: browsers, rate: 120, host: backend.example.com, port: 80, paths: {{count: 300, zipf: 1.0}}}}
faults:
  - {{at: 5s, action: backend_down, target: "backend2.example.com:80", duration: 8s}}
  - {{at: 10s, action: crash_node, target: node3, duration: 5s}}
  - {{at: 18s, action: reload, target: node1}}
  - {{at: 20s, action: clock_offset, target: node2, offset: 2s, duration: 4s}}
  - {{at: 22s, action: partition, nodes: [node1], other: [node2, node3], duration: 4s}}
expectations:
  - {{name: node1 serves, metric: nodes.node1.api.http.server_zones.server_backend.responses.2xx, op: ">", value: 100}}
  - {{name: an impossible p99, metric: nodes.node1.latency.p99_ms, op: "<", value: 0.001}}
"""

#: (action, label) of every scheduled fault, as the timeline labels them
FAULT_LABELS = [
    ("backend_down", "backend_down backend2.example.com:80"),
    ("crash_node", "crash_node node3"),
    ("reload", "reload node1"),
    ("clock_offset", "clock_offset node2 +2s"),
    ("partition", "partition node1 | node2,node3"),
]


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory) -> Path:
    """The output directory of ``clustersim run`` on the chaos scenario."""
    from clustersim.cli import main

    d = tmp_path_factory.mktemp("report")
    sc = d / "report-chaos.yaml"
    sc.write_text(FAULT_SCENARIO)
    out = d / "out"
    assert main(["run", str(sc), "--out", str(out)]) == 1  # the impossible expectation fails
    return out
