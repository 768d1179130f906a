"""Proxying to an upstream (sim.http.proxy): retries per proxy_next_upstream, their limits, and the
connect and read timeouts, at exact sim times.

Links have no latency unless a test sets one, requests and responses carry no bytes, and
backends answer after a constant 10 ms unless a test says otherwise.
"""

from __future__ import annotations

import pytest
import yaml
from simpy.events import Timeout

from sim.cluster import cluster, scenario

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"

QUIET = {"service_time": 10, "header_bytes": 0, "response_size": 0}


def world(servers: str, location: str = "", *, latency_ms: float = 0.0,
          backends: dict | None = None) -> cluster.Cluster:
    conf = (
        "events {}\n"
        "http {\n"
        f"  upstream backend {{\n    zone backend 64k;\n{servers}\n  }}\n"
        "  server {\n    listen 80;\n    status_zone site;\n"
        f"    location / {{\n      proxy_pass http://backend;\n{location}\n    }}\n"
        "  }\n"
        "}\n"
    )
    data = {
        "seed": 3,
        "nodes": 1,
        "network": {"latency_ms": latency_ms},
        "nginx_conf_inline": conf,
        "backend_defaults": QUIET,
        "backends": {addr: {**QUIET, **spec} for addr, spec in (backends or {}).items()},
    }
    sc = scenario.loads(yaml.safe_dump(data), filename="t.yaml")
    return cluster.Cluster(sc, start_workloads=False, sample=False)


class Client:
    """Sends requests to node1 and records (time, status) of each response and the peers tried."""

    def __init__(self, cl: cluster.Cluster):
        self.cl = cl
        self.env = cl.env
        self.node = cl.nodes["node1"]
        self.up = self.node.upstreams["backend"]
        self.zone = self.node.server_zones["site"]
        self.done: list[tuple[float, int]] = []
        self.picks: list[str | None] = []
        self.up.on_select = lambda peer: self.picks.append(None if peer is None else peer.name)

    def send(self):
        conn = self.node.open_conn()
        return self.node.handle(conn, "/", "localhost", 80, "10.9.0.1", 0, self._done)

    def send_at(self, t: float) -> None:
        ev = Timeout(self.env, t - self.env.now)
        ev.callbacks.append(lambda _ev: self.send())

    def run(self, until: float = 100_000) -> None:
        self.env.run(until=until)

    def _done(self, req) -> None:
        self.done.append((self.env.now, req.status))
        self.node.close_conn(req.conn)

    def peer(self, address: str):
        return next(p for p in self.up.peers if p.name == address)


def two_servers(location: str = "", **kw) -> Client:
    return Client(world(f"server {A};\nserver {B};", location, **kw))


# --- proxy_next_upstream -------------------------------------------------------------------------


def test_error_on_a_down_backend_moves_to_the_next_peer_and_the_client_gets_200():
    c = two_servers(latency_ms=1.0)
    c.cl.backend(A).set_state("down")
    c.send()
    c.run()
    # refused after one round trip (2 ms), then b: connect 2 + request 1 + 10 + response 1
    assert c.picks == [A, B]
    assert c.done == [(16.0, 200)]
    a, b = c.peer(A), c.peer(B)
    assert (a.requests, a.fails, a.responses_total, a.active) == (1, 1, 0, 0)
    assert (b.requests, b.responses[1]) == (1, 1)
    assert c.cl.backend(A).refused == 1
    assert (c.zone.requests, c.zone.responses[1], c.zone.codes) == (1, 1, {200: 1})


def test_http_500_listed_in_proxy_next_upstream_is_retried_and_counted_on_the_first_peer():
    c = two_servers("proxy_next_upstream error timeout http_500;", backends={A: {"status_mix": {500: 1.0}}})
    c.send()
    c.run()
    assert c.picks == [A, B]
    assert c.done == [(20.0, 200)]
    a = c.peer(A)
    assert (a.responses[4], a.codes, a.fails) == (1, {500: 1}, 1)
    assert c.zone.codes == {200: 1}


def test_http_500_not_listed_reaches_the_client_and_is_not_a_failure():
    c = two_servers(backends={A: {"status_mix": {500: 1.0}}})
    c.send()
    c.run()
    assert c.picks == [A]
    assert c.done == [(10.0, 500)]
    a = c.peer(A)
    assert (a.responses[4], a.fails, a.state) == (1, 0, "up")
    assert c.zone.codes == {500: 1}


def test_last_try_with_a_listed_status_passes_that_status_to_the_client():
    c = two_servers("proxy_next_upstream error http_503;",
                    backends={x: {"status_mix": {503: 1.0}} for x in (A, B)})
    c.send()
    c.run()
    assert c.picks == [A, B]
    assert c.done == [(20.0, 503)]
    assert c.peer(A).fails == c.peer(B).fails == 1


def test_http_404_listed_is_retried_but_never_counts_as_a_failure():
    c = two_servers("proxy_next_upstream error http_404;", backends={A: {"status_mix": {404: 1.0}}})
    c.send()
    c.run()
    assert c.picks == [A, B]
    assert c.done == [(20.0, 200)]
    assert (c.peer(A).fails, c.peer(A).codes) == (0, {404: 1})


def test_proxy_next_upstream_tries_1_means_no_retry():
    c = two_servers("proxy_next_upstream_tries 1;", latency_ms=1.0)
    c.cl.backend(A).set_state("down")
    c.send()
    c.run()
    assert c.picks == [A]
    assert c.done == [(2.0, 502)]
    assert c.peer(B).requests == 0


def test_proxy_next_upstream_tries_limits_the_number_of_peers_tried():
    c = Client(world(f"server {A};\nserver {B};\nserver {C};", "proxy_next_upstream_tries 2;",
                     latency_ms=1.0))
    for x in (A, B, C):
        c.cl.backend(x).set_state("down")
    c.send()
    c.run()
    assert c.picks == [A, B]
    assert c.done == [(4.0, 502)]


def test_proxy_next_upstream_off_never_retries():
    c = two_servers("proxy_next_upstream off;", latency_ms=1.0)
    c.cl.backend(A).set_state("down")
    c.send()
    c.run()
    assert c.picks == [A]
    assert c.done == [(2.0, 502)]
    assert c.peer(A).fails == 1


def test_every_peer_failing_gives_502_after_trying_each_once():
    c = Client(world(f"server {A};\nserver {B};\nserver {C};", latency_ms=1.0))
    for x in (A, B, C):
        c.cl.backend(x).set_state("down")
    c.send()
    c.run(100)
    assert c.picks == [A, B, C]
    assert c.done == [(6.0, 502)]
    assert [c.peer(x).fails for x in (A, B, C)] == [1, 1, 1]
    # all three are now unavail (max_fails=1): the next request finds no live upstream at once
    c.send_at(200)
    c.run(300)
    assert c.picks[-1] is None
    assert c.done[-1] == (200.0, 502)


# --- timeouts ------------------------------------------------------------------------------------


def test_connect_timeout_on_a_cut_link_gives_504_after_proxy_connect_timeout_exactly():
    c = Client(world(f"server {A};", "proxy_connect_timeout 3s;"))
    c.cl.network.cut("node1", A)
    c.send_at(100)
    c.run()
    assert c.done == [(3100.0, 504)]
    assert c.peer(A).fails == 1


def test_connect_timeouts_are_retried_on_the_next_peer():
    c = two_servers("proxy_connect_timeout 2s;")
    c.cl.network.cut("node1", A)
    c.send()
    c.run()
    assert c.picks == [A, B]
    assert c.done == [(2010.0, 200)]


def test_timeout_not_listed_is_not_retried():
    c = two_servers("proxy_connect_timeout 2s;\nproxy_next_upstream error;")
    c.cl.network.cut("node1", A)
    c.send()
    c.run()
    assert c.picks == [A]
    assert c.done == [(2000.0, 504)]


def test_proxy_next_upstream_timeout_stops_retrying_once_it_has_passed():
    servers = f"server {A};\nserver {B};\nserver {C};"
    c = Client(world(servers, "proxy_connect_timeout 1s;\nproxy_next_upstream_timeout 1500ms;"))
    for x in (A, B, C):
        c.cl.network.cut("node1", x)
    c.send()
    c.run()
    # tried at 0 and 1000; at 2000 the 1.5 s budget is spent, so c is never tried
    assert c.picks == [A, B]
    assert c.done == [(2000.0, 504)]
    c = Client(world(servers, "proxy_connect_timeout 1s;"))
    for x in (A, B, C):
        c.cl.network.cut("node1", x)
    c.send()
    c.run()
    assert c.picks == [A, B, C]
    assert c.done == [(3000.0, 504)]


def test_read_timeout_with_a_slow_backend_gives_504_at_proxy_read_timeout():
    c = Client(world(f"server {A};", "proxy_read_timeout 1s;", latency_ms=0.5,
                     backends={A: {"service_time": 5000}}))
    c.send_at(10)
    c.run()
    # the clock starts once the request is sent: connect 1 ms + request 0.5 ms
    assert c.done == [(1011.5, 504)]
    a = c.peer(A)
    assert (a.fails, a.responses_total, a.active) == (1, 0, 0)


def test_read_timeout_is_retried_on_the_next_peer():
    c = two_servers("proxy_read_timeout 1s;", backends={A: {"service_time": 5000}})
    c.send()
    c.run()
    assert c.picks == [A, B]
    assert c.done == [(1010.0, 200)]


def test_response_just_inside_proxy_read_timeout_is_delivered():
    c = Client(world(f"server {A};", "proxy_read_timeout 1s;", backends={A: {"service_time": 1000}}))
    c.send()
    c.run()
    assert c.done == [(1000.0, 200)]
    assert c.peer(A).fails == 0


def test_read_timeout_counts_time_spent_waiting_for_a_busy_backend():
    c = Client(world(f"server {A};", "proxy_read_timeout 150ms;",
                     backends={A: {"service_time": 100, "concurrency": 1}}))
    c.send()
    c.send()
    c.send_at(120)
    c.run()
    # the second waits 100 ms for the backend's only slot and would answer at 200: 504 at 150;
    # the third arrives at 120, gets the slot at 200 and would answer at 300: 504 at 270
    assert c.done == [(100.0, 200), (150.0, 504), (270.0, 504)]
    a = c.peer(A)
    assert (a.requests, a.fails, a.responses_total, a.active) == (3, 2, 1, 0)
    assert c.zone.processing == 0
    assert c.zone.codes == {200: 1, 504: 2}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_each_attempt_ends_exactly_once(concurrency):
    c = Client(world(f"server {A};\nserver {B};", "proxy_read_timeout 150ms;",
                     backends={A: {"service_time": 100, "concurrency": concurrency},
                               B: {"service_time": 100}}))
    for t in range(0, 50, 5):
        c.send_at(t)
    c.run()
    assert len(c.done) == 10
    for p in c.up.peers:
        assert p.active == 0
        assert p.requests == p.responses_total + p.fails
    assert c.zone.processing == 0


# --- upstream keepalive --------------------------------------------------------------------------


def test_cached_upstream_connection_saves_the_connect_round_trip():
    c = Client(world(f"server {A};\nkeepalive 2;", latency_ms=1.0))
    c.send_at(0)
    c.send_at(100)
    c.run(1000)
    # fresh: connect 2 + request 1 + 10 + response 1; reused: request 1 + 10 + response 1
    assert c.done == [(14.0, 200), (112.0, 200)]
    assert c.up.keepalive == 1


def test_a_down_backend_serves_nothing_over_cached_connections():
    c = Client(world(f"server {A};\nserver {B};\nkeepalive 4;", latency_ms=1.0))
    for t in range(0, 400, 100):
        c.send_at(t)
    c.run(1000)
    assert c.up.keepalive == 2
    c.cl.backend(A).set_state("down")
    for t in range(1000, 1400, 100):
        c.send_at(t)
    c.run(3000)
    # the first request to a finds its idle connection gone, is refused and moves to b
    assert c.picks[4:] == [A, B, B, B, B]
    assert c.done[4:] == [(1014.0, 200), (1112.0, 200), (1212.0, 200), (1312.0, 200)]
    assert (c.peer(A).fails, c.peer(A).responses_total, c.cl.backend(A).refused) == (1, 2, 1)
