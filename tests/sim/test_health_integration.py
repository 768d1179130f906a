"""Active health checks through a whole node (sim.node.node + sim.upstream.health + sim.http.proxy + faults).

The worlds here have 1 ms one-way links with infinite bandwidth and backends whose health
endpoint answers in 4 ms: a passing http check takes 2 (connect) + 1 (request) + 4 + 1 (answer)
= 8 ms, a refused one 2 ms, and the next check of a peer starts ``interval`` after the previous
one completed. Client requests are served in a constant 10 ms.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from simpy.events import Timeout

from sim.cluster import cluster, scenario

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
QUIET = {"service_time": 10, "header_bytes": 0, "response_size": 0, "health_time": 4}
SEED_EXAMPLE = Path(__file__).resolve().parents[2] / "scenarios" / "seed-example.yaml"


def world(servers: str, location: str, *, http_extra: str = "", backends: dict | None = None,
          faults: list | None = None) -> cluster.Cluster:
    conf = (
        "http {\n"
        f"{http_extra}"
        f"  upstream backend {{\n    zone backend 64k;\n{servers}\n  }}\n"
        "  server {\n    listen 80;\n"
        f"    location / {{\n      proxy_pass http://backend;\n{location}\n    }}\n"
        "  }\n"
        "}\n"
    )
    data = {
        "seed": 5,
        "nodes": 1,
        "network": {"latency_ms": 1.0, "bandwidth_mbps": float("inf")},
        "nginx_conf_inline": conf,
        "backend_defaults": QUIET,
        "backends": {addr: {**QUIET, **spec} for addr, spec in (backends or {}).items()},
        "faults": faults or [],
    }
    sc = scenario.loads(yaml.safe_dump(data), filename="t.yaml")
    return cluster.Cluster(sc, start_workloads=False, sample=False)


class Client:
    """Sends requests to node1 at given sim times; records (time, status) of each response."""

    def __init__(self, cl: cluster.Cluster):
        self.cl = cl
        self.node = cl.nodes["node1"]
        self.upstream = self.node.upstreams["backend"]
        self.done: list[tuple[float, int]] = []

    def peer(self, address: str):
        return next(p for p in self.upstream.peers if p.name == address)

    def send_at(self, t: float, uri: str = "/") -> None:
        def send(_ev):
            conn = self.node.open_conn()
            self.node.handle(conn, uri, "localhost", 80, "10.9.0.1", 0, self._done)

        Timeout(self.cl.env, t - self.cl.env.now).callbacks.append(send)

    def _done(self, req) -> None:
        self.done.append((self.cl.env.now, req.status))
        self.node.close_conn(req.conn)


def state_at(cl: cluster.Cluster, peer, t: float) -> str:
    cl.run(t)
    return peer.state


# --- fails / passes at the expected sim times ------------------------------------------------


def test_backend_down_becomes_unhealthy_at_the_third_failed_check_and_up_after_two_passes():
    # interval 1s: passing checks start at k * 1008 (done 8 ms later). The backend is down from
    # 10 s to 20 s: the checks starting at 10080, 11082 and 12084 are refused after 2 ms each,
    # so the third failure makes the peer unhealthy at 12086. Refused checks go on every 1002 ms
    # (13086 ... 19098); 20100 passes at 20108 and 21108 passes at 21116: up again.
    cl = world(
        f"server {A};\nserver {B};",
        "health_check interval=1s fails=3 passes=2;",
        faults=[{"at": "10s", "action": "backend_down", "target": A, "duration": "10s"}],
    )
    c = Client(cl)
    a = c.peer(A)
    assert state_at(cl, a, 12085.9) == "up"
    assert (a.hc_checks, a.hc_fails, a.hc_unhealthy) == (12, 2, 0)
    assert state_at(cl, a, 12086.1) == "unhealthy"
    assert (a.hc_checks, a.hc_fails, a.hc_unhealthy, a.hc_last_passed) == (13, 3, 1, False)
    assert a.downstart_at(cl.env.now) == 12086.0
    assert state_at(cl, a, 20108.1) == "unhealthy"  # one pass is not enough with passes=2
    assert a.hc_last_passed is True
    assert state_at(cl, a, 21115.9) == "unhealthy"
    assert state_at(cl, a, 21116.1) == "up"
    assert (a.hc_checks, a.hc_fails, a.hc_unhealthy) == (22, 10, 1)
    assert a.downtime_at(cl.env.now) == 21116.0 - 12086.0
    assert a.downstart_at(cl.env.now) is None


def test_unhealthy_peer_takes_no_client_requests_until_it_is_up_again():
    cl = world(
        f"server {A};\nserver {B};",
        "health_check interval=1s fails=3 passes=2;",
        faults=[{"at": "10s", "action": "backend_down", "target": A, "duration": "10s"}],
    )
    c = Client(cl)
    for i in range(10):
        c.send_at(13_000 + 100 * i)  # A is unhealthy from 12086 to 21116
    for i in range(10):
        c.send_at(22_000 + 100 * i)
    cl.run(30_000)
    assert [s for _, s in c.done] == [200] * 20
    assert cl.backend(A).requests == 5  # half of the second batch (equal weights)
    assert cl.backend(B).requests == 15
    assert c.peer(A).fails == 0  # nothing reached A while it was down: no passive failure


def test_health_checks_go_to_health_requests_not_to_requests():
    cl = world(f"server {A};\nserver {B};", "health_check interval=1s;")
    cl.run(10_000)
    c = Client(cl)
    # checks at k * 1008 for k = 0..9 (the tenth starts at 9072)
    assert [c.peer(x).hc_checks for x in (A, B)] == [10, 10]
    assert [cl.backend(x).health_requests for x in (A, B)] == [10, 10]
    assert [cl.backend(x).requests for x in (A, B)] == [0, 0]


def test_checks_travel_the_link_so_a_cut_link_fails_them_at_the_connect_timeout():
    cl = world(
        f"server {A};\nserver {B};",
        "health_check interval=1s;\nproxy_connect_timeout 500ms;",
    )
    c = Client(cl)
    a = c.peer(A)
    cl.run(1500)  # checks at 0 and 1008 passed
    cl.network.cut("node1", A)
    # the check starting at 2016 gets no answer to its SYN and fails at 2516
    assert state_at(cl, a, 2515.9) == "up"
    assert state_at(cl, a, 2516.1) == "unhealthy"
    assert cl.backend(A).refused == 0


# --- mandatory ----------------------------------------------------------------------------------


def test_mandatory_peers_start_checking_and_turn_up_when_their_first_check_passes():
    cl = world(f"server {A};\nserver {B};", "health_check interval=1s mandatory;")
    c = Client(cl)
    assert [c.peer(x).state for x in (A, B)] == ["checking", "checking"]
    cl.run(7.9)
    assert [c.peer(x).state for x in (A, B)] == ["checking", "checking"]
    cl.run(8.1)
    assert [c.peer(x).state for x in (A, B)] == ["up", "up"]
    assert c.peer(A).downtime_at(cl.env.now) == 8.0


def test_mandatory_keeps_a_server_added_at_run_time_checking_until_its_first_check():
    # B's health endpoint takes 100 ms: its first check starts at once and ends 104 ms later
    cl = world(f"server {A};", "health_check interval=1s mandatory;", backends={B: {"health_time": 100}})
    c = Client(cl)
    cl.run(5000)
    peer = c.upstream.add_server({"server": B}, has_resolver=False)
    assert peer.state == "checking"
    for i in range(6):
        c.send_at(5000 + 10 * i)  # all while B is checking
    assert state_at(cl, peer, 5103.9) == "checking"
    assert cl.backend(A).requests == 6
    assert cl.backend(B).requests == 0
    assert state_at(cl, peer, 5104.1) == "up"
    assert (peer.hc_checks, peer.hc_fails, peer.hc_last_passed) == (1, 0, True)
    assert peer.downtime_at(cl.env.now) == 104.0
    for i in range(4):
        c.send_at(6000 + 10 * i)
    cl.run(7000)
    assert cl.backend(B).requests == 2


def test_server_added_to_a_mandatory_check_that_fails_its_first_check_is_unhealthy():
    cl = world(f"server {A};", "health_check interval=1s mandatory;", backends={B: {"health_status": 503}})
    c = Client(cl)
    cl.run(5000)
    peer = c.upstream.add_server({"server": B}, has_resolver=False)
    assert state_at(cl, peer, 5007.9) == "checking"
    assert state_at(cl, peer, 5008.1) == "unhealthy"
    assert (peer.hc_checks, peer.hc_fails, peer.hc_unhealthy) == (1, 1, 1)


# --- match ------------------------------------------------------------------------------------


MATCH = '  match good {\n    status 200;\n    body ~ "^OK";\n  }\n'


def test_match_on_status_and_body_through_the_node():
    cl = world(
        f"server {A};\nserver {B};\nserver {C};",
        "health_check interval=1s match=good;",
        http_extra=MATCH,
        backends={
            A: {"health_status": 200, "health_body": "OK fine"},
            B: {"health_status": 200, "health_body": "NOT OK"},
            C: {"health_status": 503, "health_body": "OK"},
        },
    )
    c = Client(cl)
    cl.run(100)
    assert [c.peer(x).state for x in (A, B, C)] == ["up", "unhealthy", "unhealthy"]
    assert [c.peer(x).hc_last_passed for x in (A, B, C)] == [True, False, False]
    for i in range(5):
        c.send_at(200 + 10 * i)
    cl.run(1000)
    assert [cl.backend(x).requests for x in (A, B, C)] == [5, 0, 0]


def test_without_match_a_3xx_passes_and_a_5xx_fails():
    cl = world(
        f"server {A};\nserver {B};",
        "health_check interval=1s;",
        backends={A: {"health_status": 302}, B: {"health_status": 500}},
    )
    c = Client(cl)
    cl.run(100)
    assert [c.peer(x).state for x in (A, B)] == ["up", "unhealthy"]


# --- active and passive together --------------------------------------------------------------


def test_passive_max_fails_and_active_checks_coexist_and_count_separately():
    # A goes down at 1 s. A client request at 2 s is refused by A (2 ms) and retried on B:
    # max_fails=1 makes A unavail at 2002 for fail_timeout=30s. The check starting at 10008 is
    # refused at 10010: unhealthy. A is back at 15 s; the check at 20010 passes at 20018, but
    # the passive window still holds A out until 32002, when the one down period ends.
    cl = world(
        f"server {A} max_fails=1 fail_timeout=30s;\nserver {B};",
        "health_check interval=10s;",
        faults=[{"at": "1s", "action": "backend_down", "target": A, "duration": "14s"}],
    )
    c = Client(cl)
    a = c.peer(A)
    c.send_at(2000)
    assert state_at(cl, a, 2001.9) == "up"
    assert state_at(cl, a, 2002.1) == "unavail"
    assert (a.fails, a.unavail, a.hc_fails) == (1, 1, 0)
    assert state_at(cl, a, 10010.1) == "unhealthy"
    assert c.done == [(2016.0, 200)]  # retried on B: connect 2, request 1, service 10, answer 1
    assert (a.fails, a.hc_fails, a.hc_unhealthy) == (1, 1, 1)
    assert a.downstart_at(cl.env.now) == 2002.0
    assert state_at(cl, a, 20018.1) == "unavail"
    assert a.hc_last_passed is True
    assert state_at(cl, a, 32001.9) == "unavail"
    assert state_at(cl, a, 32002.1) == "up"
    assert a.downtime_at(cl.env.now) == 30000.0
    assert (a.fails, a.unavail, a.hc_checks, a.hc_fails, a.hc_unhealthy) == (1, 1, 4, 1, 1)


# --- the seed scenario ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_run():
    """scenarios/seed-example.yaml for 60 s, with a stop at 30 s in the middle of the outage."""
    cl = cluster.Cluster(scenario.load(SEED_EXAMPLE), sample=False)
    cl.run(30_000)
    mid = {n: {p.name: p.state for p in node.upstreams["backend"].peers} for n, node in cl.nodes.items()}
    cl.run(60_000)
    return cl, mid


def test_seed_example_outage_makes_backend2_unhealthy_then_up_again_on_every_node(seed_run):
    cl, mid = seed_run
    b1, b2 = "backend1.example.com:80", "backend2.example.com:80"
    assert mid == {n: {b1: "up", b2: "unhealthy"} for n in ("node1", "node2", "node3")}
    for node in cl.nodes.values():
        peers = {p.name: p for p in node.upstreams["backend"].peers}
        # checks every ~5 s from 0 to 55 s; backend2 is down from 20 s to 40 s: 4 refused checks
        got = {
            name: (p.state, p.hc_checks, p.hc_fails, p.hc_unhealthy, p.hc_last_passed)
            for name, p in peers.items()
        }
        assert got == {b1: ("up", 12, 0, 0, True), b2: ("up", 12, 4, 1, True)}
    assert cl.backends[b1].health_requests == 3 * 12
    assert cl.backends[b2].health_requests == 3 * 8


def test_seed_example_cache_counters_move_and_hits_never_reach_backends(seed_run):
    cl, _ = seed_run
    fetched = 0
    for node in cl.nodes.values():
        stats = node.caches["cache_backend"].stats
        assert stats["hit"]["responses"] > 0
        assert stats["miss"]["responses"] > 0
        fetched += sum(stats[k]["responses"] for k in ("miss", "expired", "bypass"))
    requests = sum(cl.backends[b].requests for b in ("backend1.example.com:80", "backend2.example.com:80"))
    assert requests == fetched
