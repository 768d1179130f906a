"""Scenario files (sim.cluster.scenario): what a valid file becomes, and how an invalid one is reported.

An invalid file raises ScenarioError reading ``file:line: field: reason``, where ``line`` is the
line of the offending field (for a field whose value spans several lines, the line of its key).
"""

from __future__ import annotations

import textwrap

import pytest

from sim.cluster import scenario
from sim.cluster.scenario import ScenarioError

BASE = """\
seed: 1
duration: 10s
nodes: 2
nginx_conf_inline: |
  events {}
  http {
    upstream backend { server 10.0.0.1:80; }
    server { listen 80; location / { proxy_pass http://backend; } }
  }
"""  # 9 lines: whatever a test appends starts at line 10


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as e:
        scenario.loads(text, filename="s.yaml")
    return str(e.value)


# --- valid files ---------------------------------------------------------------------------------


def test_a_minimal_scenario_gets_the_documented_defaults():
    sc = scenario.loads(BASE, filename="s.yaml")
    assert sc.name == "s"
    assert sc.seed == 1
    assert sc.duration_ms == 10_000.0
    assert sc.model.sample_interval == 1000.0
    assert [(n.name, n.address) for n in sc.nodes] == [("node1", "127.0.0.11"), ("node2", "127.0.0.12")]
    assert sc.nodes[0].conf is sc.nodes[1].conf
    assert sc.link.latency_ms == 0.5
    assert sc.workloads == ()
    b = sc.backend_spec("10.0.0.9:80")
    assert (b.address, b.concurrency, b.status_mix, b.service_time.kind, b.service_time.mean) == (
        "10.0.0.9:80", 64, ((200, 1.0),), "exponential", 20.0)


def test_durations_accept_nginx_units_and_plain_seconds():
    text = BASE.replace("duration: 10s", "duration: 1m") + "sample_interval: 0.25\n"
    sc = scenario.loads(text, filename="s.yaml")
    assert sc.duration_ms == 60_000.0
    assert sc.model.sample_interval == 250.0
    text = BASE + "workloads:\n  - name: w\n    start: 500ms\n    stop: 2\n"
    text += "    rate_curve: [[0, 1], [1s, 5]]\n"
    w = scenario.loads(text, filename="s.yaml").workloads[0]
    assert (w.start_ms, w.stop_ms, w.rate_curve) == (500.0, 2000.0, ((0.0, 1.0), (1000.0, 5.0)))


def test_backends_workloads_and_faults_are_carried_into_the_scenario():
    text = BASE + textwrap.dedent("""\
        backends:
          10.0.0.1:80:
            concurrency: 3
            service_time: {dist: lognormal, mean: 30, sigma: 0.5}
            status_mix: {200: 9, 503: 1}
        workloads:
          - name: web
            rate: 40
            nodes: [node2]
            paths: {count: 7, zipf: 0.8}
            keepalive_requests: 5
          - name: web
            arrivals: constant
        faults:
          - {at: 2s, action: backend_down, target: "10.0.0.1:80", duration: 1s}
        """)
    sc = scenario.loads(text, filename="s.yaml")
    b = sc.backend_spec("10.0.0.1:80")
    assert (b.concurrency, b.service_time.kind, b.service_time.params, b.status_mix) == (
        3, "lognormal", (30.0, 0.5), ((200, 9.0), (503, 1.0)))
    w0, w1 = sc.workloads
    assert (w0.name, w0.nodes, w0.rate, w0.paths.count, w0.paths.zipf, w0.keepalive_requests) == (
        "web0", ("node2",), 40.0, 7, 0.8, 5)
    assert (w1.name, w1.nodes, w1.arrivals) == ("web1", None, "constant")
    f = sc.model.faults[0]
    assert (f.at, f.action, f.target, f.duration) == (2000.0, "backend_down", "10.0.0.1:80", 1000.0)


def test_nginx_conf_path_is_relative_to_the_scenario_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "up.conf").write_text("upstream backend { zone b 64k; server 10.0.0.7:80; }\n")
    (tmp_path / "configs" / "nginx.conf").write_text(
        "events {}\nhttp {\n  include up.conf;\n"
        "  server { listen 80; location / { proxy_pass http://backend; } }\n}\n"
    )
    (tmp_path / "run.yaml").write_text("nodes: 1\nnginx_conf: configs/nginx.conf\n")
    sc = scenario.load(tmp_path / "run.yaml", seed=42)
    assert sc.seed == 42
    assert sc.name == "run"
    assert sc.nodes[0].conf.http.upstreams["backend"].servers[0].address == "10.0.0.7:80"


def test_with_seed_changes_only_the_seed():
    sc = scenario.loads(BASE, filename="s.yaml")
    other = sc.with_seed(9)
    assert (other.seed, sc.seed) == (9, 1)
    assert other.model.model_copy(update={"seed": 1}) == sc.model


# --- invalid files: file:line: field: reason ------------------------------------------------------


def test_unknown_top_level_field_names_its_line():
    assert error_of(BASE + "colour: red\n") == "s.yaml:10: colour: unknown field"


def test_unknown_nested_field_names_its_path_and_line():
    text = BASE + "backends:\n  10.0.0.1:80:\n    concurrency: 2\n    colour: 3\n"
    assert error_of(text) == "s.yaml:13: backends.10.0.0.1:80.colour: unknown field"
    text = BASE + "workloads:\n  - name: w\n    rate: 10\n    burst: 3\n"
    assert error_of(text) == "s.yaml:13: workloads[0].burst: unknown field"


def test_bad_duration_names_the_field_and_the_value():
    msg = error_of(BASE.replace("duration: 10s", "duration: 10 parsecs"))
    assert msg == 's.yaml:2: duration: invalid time value "10 parsecs"'
    text = BASE + "workloads:\n  - name: w\n    rate: 10\n  - name: v\n    start: soon\n"
    assert error_of(text) == 's.yaml:14: workloads[1].start: invalid time value "soon"'
    text = BASE + "faults:\n  - at: 1s\n    action: backend_down\n    target: 10.0.0.1:80\n"
    text += "    duration: forever\n"
    assert error_of(text) == 's.yaml:14: faults[0].duration: invalid time value "forever"'


def test_non_positive_duration_and_sample_interval_are_refused():
    assert error_of(BASE + "sample_interval: 0\n") == "s.yaml:10: sample_interval: must be positive"
    assert error_of(BASE.replace("duration: 10s", "duration: 0s")) == "s.yaml:2: duration: must be positive"


def test_bad_distribution_names_the_field_and_what_is_wrong():
    text = BASE + "backends:\n  10.0.0.1:80:\n    concurrency: 2\n    service_time: {dist: exponential}\n"
    assert error_of(text) == "s.yaml:13: backends.10.0.0.1:80.service_time: missing 'mean'"
    text = BASE + "backend_defaults:\n  response_size: {dist: uniform, low: 9, high: 1}\n"
    msg = error_of(text)
    assert msg.startswith("s.yaml:11: backend_defaults.response_size")
    assert msg.endswith("must be >= low")


def test_unknown_distribution_kind_reads_as_one_field_path():
    text = BASE + "backends:\n  10.0.0.1:80:\n    service_time: {dist: gamma, mean: 3}\n"
    msg = error_of(text)
    assert msg.startswith("s.yaml:12: backends.10.0.0.1:80.service_time")
    assert "got 'gamma'" in msg
    # the reason must not start with a dangling fragment of the path (": .dist: ...")
    assert ": ." not in msg


def test_unknown_node_in_a_workload_is_named():
    text = BASE + "workloads:\n  - name: w\n    rate: 10\n    nodes: [node1, node9]\n"
    assert error_of(text) == "s.yaml:13: workloads[0].nodes: unknown node 'node9'"


def test_unknown_node_in_a_fault_is_named():
    text = BASE + "faults:\n  - at: 1s\n    action: crash_node\n    target: node7\n"
    assert error_of(text) == "s.yaml:13: faults[0].target: expected a node name, got 'node7'"
    text = BASE + "faults:\n  - at: 1s\n    action: backend_down\n"
    assert error_of(text) == "s.yaml:11: faults[0].target: a backend address is required"


def test_negative_rate_is_refused():
    text = BASE + "workloads:\n  - name: w\n    rate: -10\n"
    msg = error_of(text)
    assert msg.startswith("s.yaml:12: workloads[0].rate: ")
    assert "greater than or equal to 0" in msg


def test_rate_curve_must_be_in_time_order_with_non_negative_rates():
    text = BASE + "workloads:\n  - name: w\n    rate_curve: [[10s, 5], [2s, 3]]\n"
    assert error_of(text) == "s.yaml:12: workloads[0].rate_curve: points must be in time order"
    text = BASE + "workloads:\n  - name: w\n    rate_curve: [[1s, 5], [2s, -3]]\n"
    assert error_of(text) == "s.yaml:12: workloads[0].rate_curve: rates must be non-negative"


def test_status_mix_errors_point_at_the_status_mix_key():
    text = BASE + "backends:\n  10.0.0.1:80:\n    status_mix: {200: 1, 700: 1}\n"
    assert error_of(text) == "s.yaml:12: backends.10.0.0.1:80.status_mix: status 700 is not an HTTP status"
    # written as a block mapping the error still names the line of `status_mix:`, not its first entry
    text = BASE + "backends:\n  10.0.0.1:80:\n    status_mix:\n      200: 1\n      500: -1\n"
    assert error_of(text) == "s.yaml:12: backends.10.0.0.1:80.status_mix: weight of 500 must be non-negative"


def test_node_count_and_node_list_errors():
    msg = error_of(BASE.replace("nodes: 2", "nodes: 0"))
    assert msg == "s.yaml:3: nodes: node count must be between 1 and 64"
    dup = BASE.replace("nodes: 2", "nodes:\n  - name: a\n  - name: a")
    assert error_of(dup) == "s.yaml:3: nodes: node names must be unique"


def test_unknown_field_of_a_listed_node_is_reported_on_that_node():
    text = BASE.replace("nodes: 2", "nodes:\n  - name: a\n    colour: x")
    assert error_of(text) == "s.yaml:5: nodes[0].colour: unknown field"


def test_out_of_range_network_values_are_refused():
    msg = error_of(BASE + "network:\n  latency_ms: 1\n  loss: 2\n")
    assert msg.startswith("s.yaml:12: network.loss: ")


def test_yaml_syntax_errors_and_non_mappings_are_reported_with_a_line():
    assert error_of(BASE + "backends: [\n").startswith("s.yaml:11: YAML syntax: ")
    assert error_of("- a\n- b\n") == "s.yaml:1: (top level): expected a mapping of scenario fields"


def test_a_scenario_without_nginx_conf_is_refused():
    msg = error_of("seed: 1\nnodes: 1\n")
    assert msg == "s.yaml:2: nginx_conf: node node1 has no nginx_conf and the scenario none"


def test_missing_nginx_conf_file_is_named(tmp_path):
    (tmp_path / "run.yaml").write_text("nodes: 1\nnginx_conf: nope.conf\n")
    with pytest.raises(ScenarioError) as e:
        scenario.load(tmp_path / "run.yaml")
    assert str(e.value) == f"{tmp_path / 'run.yaml'}:2: nginx_conf: file not found: {tmp_path / 'nope.conf'}"


def test_errors_in_an_nginx_conf_file_name_that_file_and_line(tmp_path):
    conf = "events {}\nhttp {\n  upstream b {\n    server 10.0.0.1:80 weight=0;\n  }\n}\n"
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "run.yaml").write_text("nodes: 1\nnginx_conf: nginx.conf\n")
    with pytest.raises(ScenarioError) as e:
        scenario.load(tmp_path / "run.yaml")
    assert str(e.value).startswith(f'{tmp_path / "nginx.conf"}:4: invalid parameter "weight=0"')


def test_errors_in_an_inline_nginx_conf_point_at_the_line_of_the_scenario_file():
    msg = error_of(BASE.replace("server 10.0.0.1:80;", "server 10.0.0.1:80 weight=0;"))
    assert 'invalid parameter "weight=0"' in msg
    # the bad directive is on line 7 of s.yaml (line 3 of the inline text, which starts on line 5)
    assert msg.startswith("s.yaml:7: nginx_conf_inline: ")


def test_clock_offsets_may_be_negative():
    from sim.cluster import scenario

    text = BASE.replace("nodes: 2", "nodes:\n  - {name: a, clock_offset: -200ms}\n  - {name: b, clock_offset: -2}")
    sc = scenario.loads(text, filename="s.yaml")
    assert [n.clock_offset_ms for n in sc.nodes] == [-200.0, -2000.0]
