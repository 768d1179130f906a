"""The reload, dns and api steps of a scenario's timeline, and how they are validated."""

from pathlib import Path

import pytest

from api.inprocess import attach
from sim.cluster import scenario
from sim.cluster.cluster import Cluster
from sim.cluster.faults import ApiHookMissing

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "scenarios" / "monitoring" / "configs"

HEAD = f"""
seed: 5
duration: 20s
nginx_conf: {CONFIGS / "app.conf"}
nodes: 3
workloads:
  - {{rate: 20, host: www.example.com, paths: {{count: 10}}}}
"""


def _load(faults: str, head: str = HEAD) -> scenario.Scenario:
    return scenario.loads(head + "faults:\n" + faults, filename="t.yaml", base_dir=CONFIGS)


def _run(sc, *, hook: bool = True) -> Cluster:
    cl = Cluster(sc, sample=False)
    if hook:
        attach(cl)
    cl.run()
    return cl


def test_a_rolling_reload_with_a_new_conf_reloads_each_node_stagger_apart():
    sc = _load("  - {at: 5s, action: reload, target: all, stagger: 3s, nginx_conf: app-v2.conf}\n")
    cl = _run(sc)
    reloads = [(t, note) for t, a, note in cl.fault_log if a == "reload"]
    assert [t for t, _ in reloads] == [5_000, 8_000, 11_000]
    assert [n.split()[0] for _, n in reloads] == ["node1", "node2", "node3"]
    for node in cl.nodes.values():
        assert node.generation == 2 and set(node.server_zones) == {"www_v2"}
    assert cl.nodes["node3"].load_time == 11_000


def test_a_reload_of_a_list_with_duration_goes_back_to_each_nodes_own_conf():
    sc = _load("  - {at: 5s, action: reload, target: [node2, node3], nginx_conf: app-v2.conf, duration: 5s}\n")
    cl = _run(sc)
    actions = [(t, a) for t, a, _ in cl.fault_log]
    assert actions == [(5_000, "reload"), (10_000, "reload:healed")]
    assert cl.nodes["node1"].generation == 1
    assert cl.nodes["node2"].generation == 3 and set(cl.nodes["node2"].server_zones) == {"www"}


def test_an_api_step_goes_through_the_nodes_api_and_is_in_the_fault_log():
    sc = _load("  - {at: 10s, action: api, node: node2, method: DELETE, path: /api/9/http/server_zones/www}\n"
               "  - {at: 11s, action: api, node: node2, method: POST, path: /api/9/http/upstreams/app/servers,"
               " body: {server: '10.0.2.9:8080'}}\n")
    cl = _run(sc)
    assert [(t, a, n) for t, a, n in cl.fault_log] == [
        (10_000, "api", "node2 DELETE /api/9/http/server_zones/www -> 204"),
        (11_000, "api", "node2 POST /api/9/http/upstreams/app/servers -> 201"),
    ]
    assert "10.0.2.9:8080" in [p.server for p in cl.nodes["node2"].upstreams["app"].peers]
    # node2's zone counts from 10 s on, node1's from the start; the node-wide counter never reset
    www1, www2 = (cl.nodes[n].server_zones["www"].requests for n in ("node1", "node2"))
    assert 0 < www2 < www1
    assert cl.nodes["node2"].requests_total > www2


def test_an_api_error_is_recorded_with_its_code_and_does_not_stop_the_run():
    sc = _load("  - {at: 2s, action: api, node: node1, method: DELETE, path: /api/9/http/upstreams/nope/servers/0}\n")
    cl = _run(sc)
    (_, action, note), = cl.fault_log
    assert action == "api" and note.startswith("node1 DELETE /api/9/http/upstreams/nope/servers/0 -> 404 UpstreamNotFound")
    assert cl.env.now == 20_000


def test_a_scenario_with_api_steps_refuses_to_run_without_an_api_hook():
    sc = _load("  - {at: 2s, action: api, node: node1, method: DELETE, path: /api/9/http/server_zones/www}\n")
    cl = Cluster(sc, sample=False)
    with pytest.raises(ApiHookMissing, match=r"1 api step\(s\) \(the first at 2s: DELETE /api/9/http/server_zones/www on node1\)"):
        cl.run()


def test_a_dns_step_changes_what_resolve_peers_follow():
    head = f"""
seed: 5
duration: 30s
nginx_conf: {CONFIGS / "dns.conf"}
nodes: 1
hosts:
  app.service.internal: [10.0.3.1]
workloads:
  - {{rate: 20, host: www.example.com, paths: {{count: 10}}}}
"""
    sc = _load("  - {at: 10s, action: dns, target: app.service.internal, addresses: [10.0.3.9]}\n", head)
    cl = _run(sc)
    assert cl.fault_log == [(10_000, "dns", "app.service.internal now resolves to 10.0.3.9")]
    assert [p.server for p in cl.nodes["node1"].upstreams["app"].peers] == ["10.0.3.9:8080"]


@pytest.mark.parametrize("step, message", [
    ("{at: 1s, action: reload, target: [node1, node9]}", "t.yaml:9: faults[0].target: unknown node 'node9'"),
    ("{at: 1s, action: reload, target: node1, nginx_conf: missing.conf}", "t.yaml:9: nginx_conf: file not found"),
    ("{at: 1s, action: reload}", "faults[0].target: expected a node name, a list of them, or \"all\""),
    ("{at: 1s, action: reload, target: node1, duration: 5s}", "faults[0].duration: only a reload with nginx_conf heals"),
    ("{at: 1s, action: crash_node, target: node1, stagger: 1s}", "faults[0].stagger: only for reload steps, not crash_node"),
    ("{at: 1s, action: crash_node, target: [node1]}", "faults[0].target: a list of nodes is only for reload"),
    ("{at: 1s, action: api, node: node1, method: DELETE}", "faults[0]: an api step needs method and path"),
    ("{at: 1s, action: api, node: node7, method: GET, path: /api/9/nginx}", "faults[0].node: expected a node name, got 'node7'"),
    ("{at: 1s, action: api, node: node1, method: GET, path: api/9/nginx}", "faults[0].path: must start with '/'"),
    ("{at: 1s, action: api, node: node1, method: BREW, path: /api/9/nginx}", "t.yaml:9: faults[0].method:"),
    ("{at: 1s, action: dns, target: a.example.com}", "faults[0]: a dns step needs target (a host name) and addresses"),
])
def test_bad_timeline_steps_are_named_with_file_line_and_field(step, message):
    with pytest.raises(scenario.ScenarioError) as err:
        _load(f"  - {step}\n")
    assert message in str(err.value)
    assert str(err.value).startswith("t.yaml:9") or "nginx_conf of t.yaml:9" in str(err.value)
