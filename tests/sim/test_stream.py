"""The stream side: sessions through stream servers and upstreams, their counters, the workload."""

from __future__ import annotations

import pytest

from sim.cluster import cluster, scenario
from sim.workload.stream_clients import StreamWorkloadSpec, start_stream_workloads

LAT = 1.0  # one way, node <-> backend
BW = 125_000.0  # bytes per ms
REPLY = 1024

BASE = """
seed: 11
duration: 30s
nodes: 1
network: {latency_ms: 1.0}
backend_defaults: {stream_response_bytes: 1024}
nginx_conf_inline: |
  stream {
    limit_conn_zone $remote_addr zone=perip:1m;
    upstream tcp {
      zone tcp 64k;
      server 10.0.1.1:5432;
      server 10.0.1.2:5432;
    }
    upstream tcp_checked {
      zone tcp_checked 64k;
      server 10.0.1.1:5432;
      server 10.0.1.2:5432;
    }
    server {
      listen 5432;
      proxy_pass tcp;
      proxy_connect_timeout 1s;
      status_zone db;
    }
    server {
      listen 5433;
      proxy_pass tcp;
      proxy_next_upstream off;
      status_zone strict;
    }
    server {
      listen 5434;
      return "hello";
      status_zone ret;
    }
    server {
      listen 5435;
      limit_conn perip 1;
      proxy_pass tcp;
      status_zone limited;
    }
    server {
      listen 5436;
      proxy_pass tcp_checked;
      health_check interval=1s fails=1 passes=1;
      status_zone checked;
    }
  }
"""


def make(text=BASE, **kw):
    sc = scenario.loads(text, filename="stream.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False, **kw)
    return cl, cl.nodes["node1"]


def session(node, port=5432, ip="10.9.0.1", send=500, duration=100.0, done=None):
    return node.stream.open_session(port, ip, send, duration, done)


def zone_tuple(z):
    return (z.connections, z.processing, dict(z.sessions), z.sessions_total, z.discarded, z.received, z.sent)


def test_a_proxied_session_counts_in_its_zone_and_its_peer():
    cl, node = make()
    s = session(node)
    z = node.stream.server_zones["db"]
    assert zone_tuple(z) == (1, 1, {"2xx": 0, "4xx": 0, "5xx": 0}, 0, 0, 0, 0)
    cl.run(99.9)
    assert s.status == 0 and z.processing == 1
    cl.run(100.1)  # the client's 100 ms outlast the exchange (about 4 ms)
    assert s.status == 200
    assert zone_tuple(z) == (1, 0, {"2xx": 1, "4xx": 0, "5xx": 0}, 1, 0, 500, REPLY)
    p = node.stream.upstreams["tcp"].peers[0]
    assert (p.connections, p.active, p.sent, p.received, p.fails) == (1, 0, 500, REPLY, 0)
    assert p.connect_time == 2 * LAT
    assert p.first_byte_time == pytest.approx(2 * LAT + (LAT + 500 / BW) + LAT)
    assert p.response_time == pytest.approx(100.0)
    assert node.connections_accepted == 1 and node.connections_active == 0


def test_a_session_lasts_until_the_last_byte_when_that_comes_after_the_clients_duration():
    cl, node = make()
    s = session(node, duration=1.0)
    end = 2 * LAT + (LAT + 500 / BW) + (LAT + REPLY / BW)
    cl.run(end - 0.001)
    assert s.status == 0
    cl.run(end + 0.001)
    assert s.status == 200
    assert node.stream.upstreams["tcp"].peers[0].response_time == pytest.approx(end)


def test_sessions_are_balanced_round_robin_over_the_peers():
    cl, node = make()
    for i in range(4):
        session(node, ip=f"10.9.0.{i}")
    peers = node.stream.upstreams["tcp"].peers
    assert [p.connections for p in peers] == [2, 2] and [p.active for p in peers] == [2, 2]
    cl.run(1000)
    assert [p.active for p in peers] == [0, 0]


def test_a_cut_link_times_out_after_proxy_connect_timeout_and_the_next_peer_serves():
    cl, node = make()
    cl.network.cut("node1", "10.0.1.1:5432")
    s = session(node, duration=10.0)
    cl.run(999)
    p1, p2 = node.stream.upstreams["tcp"].peers
    assert (p1.active, p1.fails, p2.connections) == (1, 0, 0)
    cl.run(1000 + 2 * LAT + 0.5)
    assert (p1.active, p1.fails, p1.state, p2.connections) == (0, 1, "unavail", 1)
    cl.run(2000)
    assert s.status == 200 and p2.connect_time == 2 * LAT
    assert node.stream.server_zones["db"].sessions["2xx"] == 1


def test_when_every_peer_refuses_the_session_ends_with_502():
    faults = """
faults:
  - {at: 0s, action: backend_down, target: "10.0.1.1:5432"}
  - {at: 0s, action: backend_down, target: "10.0.1.2:5432"}
"""
    cl, node = make(BASE + faults)
    cl.run(1)
    s = session(node)
    cl.run(10)
    assert s.status == 502
    z = node.stream.server_zones["db"]
    assert (z.sessions["5xx"], z.sessions_total, z.sent) == (1, 1, 0)
    assert [p.fails for p in node.stream.upstreams["tcp"].peers] == [1, 1]
    assert cl.backends["10.0.1.1:5432"].refused == 2  # the session, and the health check at 0 s


def test_with_proxy_next_upstream_off_the_first_failure_ends_the_session():
    cl, node = make()
    cl.backend("10.0.1.1:5432").set_state("down")
    s = session(node, port=5433)
    cl.run(10)
    assert s.status == 502
    assert [p.connections for p in node.stream.upstreams["tcp"].peers] == [1, 0]


def test_no_live_peer_answers_502_at_once():
    cl, node = make()
    for p in node.stream.upstreams["tcp"].peers:
        p.down = True
    s = session(node)
    assert s.status == 502 and node.stream.server_zones["db"].sessions["5xx"] == 1


def test_return_answers_with_its_text_and_status_200():
    cl, node = make()
    s = session(node, port=5434, send=0)
    assert s.status == 200
    z = node.stream.server_zones["ret"]
    assert (z.sessions["2xx"], z.sent, z.processing) == (1, len("hello"), 0)


def test_limit_conn_ends_a_second_connection_from_one_address_with_503():
    cl, node = make()
    first = session(node, port=5435)
    second = session(node, port=5435)
    assert first.status == 0 and second.status == 503
    cl.run(200)
    third = session(node, port=5435)
    assert first.status == 200 and third.status == 0
    z = node.stream.server_zones["limited"]
    assert (z.connections, z.sessions["2xx"], z.sessions["5xx"]) == (3, 1, 1)
    assert node.stream_limit_conns["perip"].rejected == 1


def test_a_connection_closed_before_any_data_is_discarded_without_a_session():
    cl, node = make()
    s = node.stream.open_session(5432, "10.9.0.1", 0, 0.0, discard=True)
    assert s is not None and s.status == 0
    z = node.stream.server_zones["db"]
    assert (z.connections, z.discarded, z.sessions_total, z.processing) == (1, 1, 0, 0)


def test_nothing_listening_on_the_port_refuses_the_connection():
    cl, node = make()
    assert node.stream.open_session(9999, "10.9.0.1", 1, 1.0) is None
    assert node.connections_accepted == 0


def test_the_stream_health_check_takes_a_down_backend_out_of_rotation():
    cl, node = make()
    cl.run(500)
    cl.backend("10.0.1.1:5432").set_state("down")
    cl.run(1500)  # the check at 1 s is refused
    p1, p2 = node.stream.upstreams["tcp_checked"].peers
    assert (p1.state, p1.hc_fails, p1.hc_last_passed) == ("unhealthy", 1, False)
    for i in range(3):
        session(node, port=5436, ip=f"10.9.1.{i}")
    assert (p1.connections, p2.connections) == (0, 3)
    cl.backend("10.0.1.1:5432").set_state("up")
    cl.run(2500)
    assert p1.state == "up" and p1.hc_unhealthy == 1


def test_a_crash_abandons_sessions_and_the_restarted_node_counts_from_zero():
    cl, node = make()
    session(node)
    old = node.stream
    node.crash()
    assert old.stopped and node.stream.open_session(5432, "10.9.0.1", 1, 1.0) is None
    cl.run(500)
    assert old.server_zones["db"].sessions_total == 0
    node.restart()
    assert node.stream is not old and zone_tuple(node.stream.server_zones["db"])[0] == 0


def test_a_reload_keeps_the_stream_zone_counters():
    cl, node = make()
    session(node)
    cl.run(500)
    node.reload()
    assert node.stream.server_zones["db"].sessions["2xx"] == 1


def test_a_constant_stream_workload_opens_rate_sessions_per_second_per_node():
    text = BASE.replace("nodes: 1", "nodes: 2") + """
stream_workloads:
  - {name: tcp, port: 5432, rate: 10, arrivals: constant, duration: 50, bytes_sent: 200, stop: 1s}
"""
    sc = scenario.loads(text)
    (spec,) = sc.stream_workloads
    assert spec == StreamWorkloadSpec(name="tcp", port=5432, rate=10.0, arrivals="constant",
                                      duration=spec.duration, bytes_sent=spec.bytes_sent, stop_ms=1000.0)
    assert (spec.duration.mean, spec.bytes_sent.mean) == (50.0, 200.0)
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    (w,) = start_stream_workloads(cl)
    cl.run(2000)
    for name in ("node1", "node2"):
        st = w.stats[name]
        assert (st.opened, st.completed, st.refused, st.statuses) == (9, 9, 0, {200: 9})  # 0.1 s .. 0.9 s
        z = cl.nodes[name].stream.server_zones["db"]
        assert (z.sessions["2xx"], z.received, z.sent) == (9, 9 * 200, 9 * REPLY)


def test_a_stream_workload_with_unknown_nodes_is_a_scenario_error():
    text = BASE + "stream_workloads: [{port: 5432, nodes: [node9]}]\n"
    with pytest.raises(scenario.ScenarioError, match=r"stream_workloads\[0\]\.nodes: unknown node 'node9'"):
        scenario.loads(text, filename="s.yaml")


def test_a_server_added_at_run_time_is_health_checked_too():
    cl, node = make()
    up = node.stream.upstreams["tcp_checked"]
    peer = up.add_server({"server": "10.0.1.3:5432"}, has_resolver=False)
    cl.backend("10.0.1.3:5432").set_state("down")
    cl.run(100)
    assert (peer.state, peer.hc_checks) == ("unhealthy", 1)
