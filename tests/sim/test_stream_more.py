"""Stream sessions: proxy_timeout, and open-ended sessions that end when the client closes."""

from __future__ import annotations

import pytest

from sim.cluster import cluster, scenario
from sim.core import dists
from sim.workload.stream_clients import StreamWorkloadSpec, start_stream_workloads

LAT = 1.0  # one way, node <-> backend
BW = 125_000.0  # bytes per ms
REPLY = 1024
SEND = 500
CONNECT = 2 * LAT
# the exchange: connect, the client's bytes up, the whole answer down; then the session idles
ANSWER_AT = CONNECT + (LAT + SEND / BW) + (LAT + REPLY / BW)

BASE = """
seed: 11
duration: 30s
nodes: 1
network: {latency_ms: 1.0}
backend_defaults: {stream_response_bytes: 1024}
nginx_conf_inline: |
  stream {
    upstream tcp {
      zone tcp 64k;
      server 10.0.1.1:5432;
      server 10.0.1.2:5432;
    }
    server {
      listen 5432;
      proxy_pass tcp;
      status_zone db;
    }
    server {
      listen 5440;
      proxy_pass tcp;
      proxy_timeout 50ms;
      proxy_connect_timeout 1s;
      status_zone short;
    }
  }
"""


def make():
    sc = scenario.loads(BASE, filename="stream_more.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    return cl, cl.nodes["node1"]


def open_(node, port=5440, duration=100.0, done=None, **kw):
    return node.stream.open_session(port, "10.9.0.1", SEND, duration, done, **kw)


def zone_tuple(z):
    return (z.processing, dict(z.sessions), z.received, z.sent)


def first_peer(node):
    return node.stream.upstreams["tcp"].peers[0]


# ---------------------------------------------------------------------------------------------
# proxy_timeout


def test_a_session_idle_longer_than_proxy_timeout_ends_at_the_last_byte_plus_the_timeout_with_200():
    cl, node = make()
    s = open_(node, duration=100.0)
    end = ANSWER_AT + 50.0
    cl.run(end - 0.001)
    assert s.status == 0
    cl.run(end + 0.001)
    assert (s.status, s.timed_out) == (200, True)
    z = node.stream.server_zones["short"]
    assert zone_tuple(z) == (0, {"2xx": 1, "4xx": 0, "5xx": 0}, SEND, REPLY)
    p = first_peer(node)
    assert (p.active, p.sent, p.received, p.fails) == (0, SEND, REPLY, 0)
    assert p.response_time == pytest.approx(end)


def test_a_client_that_closes_within_proxy_timeout_of_the_last_byte_is_not_timed_out():
    cl, node = make()
    s = open_(node, duration=50.0)
    cl.run(49.999)
    assert s.status == 0
    cl.run(50.001)
    assert (s.status, s.timed_out) == (200, False)
    assert first_peer(node).response_time == pytest.approx(50.0)


def test_the_default_proxy_timeout_of_ten_minutes_closes_a_longer_idle_session():
    cl, node = make()
    s = open_(node, port=5432, duration=700_000.0)
    cl.run(ANSWER_AT + 600_000.0 - 0.001)
    assert s.status == 0
    cl.run(ANSWER_AT + 600_000.0 + 0.001)
    assert (s.status, s.timed_out) == (200, True)


def test_a_stream_workload_counts_the_sessions_proxy_timeout_ended():
    cl, node = make()
    spec = StreamWorkloadSpec(
        name="w", port=5440, rate=10.0, arrivals="constant",
        duration=dists.DistSpec("constant", (80.0,)), bytes_sent=dists.DistSpec("constant", (500.0,)),
        stop_ms=1000.0,
    )
    (w,) = start_stream_workloads(cl, [spec])
    cl.run(2000)
    st = w.stats["node1"]
    # arrivals at 100, 200, ... 900 ms; each client would idle 80 - 4 ms, beyond the 50 ms
    assert (st.opened, st.completed, st.timed_out, st.statuses) == (9, 9, 9, {200: 9})


# ---------------------------------------------------------------------------------------------
# Open-ended sessions (live clients)


@pytest.mark.parametrize("duration", [None, float("inf")])
def test_an_open_ended_session_stays_open_until_the_client_closes_it(duration):
    cl, node = make()
    ended, replied = [], []
    s = open_(node, port=5432, duration=duration, done=ended.append, on_reply=replied.append)
    assert s.open_ended
    cl.run(ANSWER_AT - 0.001)
    assert replied == []
    cl.run(ANSWER_AT + 0.001)
    assert replied == [s] and s.sent == REPLY
    cl.run(60_000)
    z = node.stream.server_zones["db"]
    p = first_peer(node)
    assert (s.status, z.processing, p.active, ended) == (0, 1, 1, [])
    epoch = p.upstream.epoch
    node.stream.close_session(s, 800)
    assert (s.status, s.timed_out, ended) == (200, False, [s])
    assert zone_tuple(z) == (0, {"2xx": 1, "4xx": 0, "5xx": 0}, 800, REPLY)
    assert (p.active, p.sent, p.received) == (0, 800, REPLY)
    assert p.response_time == pytest.approx(60_000.0)
    assert p.upstream.epoch > epoch
    assert node.connections_active == 0


def test_closing_a_session_twice_counts_it_once():
    cl, node = make()
    s = open_(node, port=5432, duration=None)
    cl.run(100)
    node.stream.close_session(s, 10)
    node.stream.close_session(s, 99)
    z = node.stream.server_zones["db"]
    assert zone_tuple(z) == (0, {"2xx": 1, "4xx": 0, "5xx": 0}, 10, REPLY)
    assert first_peer(node).sent == 10


def test_the_sent_bytes_given_at_close_are_what_the_zone_counts_as_sent():
    cl, node = make()
    s = open_(node, port=5432, duration=None)
    cl.run(100)
    node.stream.close_session(s, 300, sent_bytes=REPLY + 300)  # the answer plus an echo
    assert node.stream.server_zones["db"].sent == REPLY + 300
    assert first_peer(node).received == REPLY  # the backend sent its answer only


def test_a_client_closing_before_the_answer_arrived_gets_nothing_from_the_backend():
    cl, node = make()
    s = open_(node, port=5432, duration=None)
    cl.run(CONNECT + 0.5)  # connected, the answer still on its way
    node.stream.close_session(s, SEND)
    p = first_peer(node)
    assert (s.status, s.sent, p.active, p.sent, p.received) == (200, 0, 0, SEND, 0)
    cl.run(100)
    assert node.stream.server_zones["db"].sessions["2xx"] == 1


def test_a_client_closing_while_the_peer_is_being_connected_frees_the_peer_without_a_failure():
    cl, node = make()
    cl.network.cut("node1", "10.0.1.1:5432")
    s = open_(node, duration=None)  # the SYN goes unanswered until proxy_connect_timeout (1 s)
    cl.run(500)
    p = first_peer(node)
    assert (p.connections, p.active) == (1, 1)
    node.stream.close_session(s, 0)
    assert (s.status, p.active) == (200, 0)
    cl.run(3000)
    assert (p.fails, p.state, node.stream.upstreams["tcp"].peers[1].connections) == (0, "up", 0)


def test_an_open_ended_session_idle_for_proxy_timeout_is_closed_with_200():
    cl, node = make()
    ended = []
    s = open_(node, duration=None, done=ended.append)
    cl.run(ANSWER_AT + 50.0 - 0.001)
    assert ended == []
    cl.run(ANSWER_AT + 50.0 + 0.001)
    assert (ended, s.status, s.timed_out, s.sent) == ([s], 200, True, REPLY)
    assert first_peer(node).response_time == pytest.approx(ANSWER_AT + 50.0)


def test_activity_on_an_open_ended_session_restarts_its_proxy_timeout():
    cl, node = make()
    s = open_(node, duration=None)
    cl.run(30)
    node.stream.note_activity(s)
    cl.run(70)
    node.stream.note_activity(s)
    cl.run(119.999)
    assert s.status == 0
    cl.run(120.001)
    assert (s.status, s.timed_out) == (200, True)
