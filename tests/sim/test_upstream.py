"""Upstream groups and peers through a running node (sim.upstream.upstream): balancing, passive failure
detection, backup servers, max_conns and the queue, slow_start, and run-time add/patch/remove.

Each test builds a one-node world from an inline scenario and sends requests by hand at exact
sim times. Unless a test says otherwise, links have no latency, requests and responses carry
no bytes, and backends answer after a constant 10 ms, so every time below is exact.
"""

from __future__ import annotations

import pytest
import yaml
from simpy.events import Timeout

from sim.cluster import cluster, scenario
from sim.core import errors

A, B, C, D = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"

#: a backend that answers after exactly 10 ms with an empty response
QUIET = {"service_time": 10, "header_bytes": 0, "response_size": 0}


def world(upstream: str, location: str = "", *, latency_ms: float = 0.0, backends: dict | None = None,
          upstream_extra: str = "", seed: int = 1) -> cluster.Cluster:
    """One node proxying ``location /`` to ``upstream backend`` (zone included) with these lines."""
    conf = (
        "events {}\n"
        "http {\n"
        f"  upstream backend {{\n    zone backend 64k;\n{upstream}\n{upstream_extra}\n  }}\n"
        "  server {\n    listen 80;\n    status_zone site;\n"
        f"    location / {{\n      proxy_pass http://backend;\n{location}\n    }}\n"
        "  }\n"
        "}\n"
    )
    data = {
        "seed": seed,
        "nodes": [{"name": "node1", "worker_connections": 100_000}],
        "network": {"latency_ms": latency_ms},
        "nginx_conf_inline": conf,
        "backend_defaults": QUIET,
        "backends": {addr: {**QUIET, **spec} for addr, spec in (backends or {}).items()},
    }
    sc = scenario.loads(yaml.safe_dump(data), filename="t.yaml")
    return cluster.Cluster(sc, start_workloads=False, sample=False)


class Client:
    """Sends requests to node1 by hand and records (time, status) of each response."""

    def __init__(self, cl: cluster.Cluster):
        self.cl = cl
        self.env = cl.env
        self.node = cl.nodes["node1"]
        self.up = self.node.upstreams["backend"]
        self.done: list[tuple[float, int]] = []
        self.picks: list[str | None] = []
        self.up.on_select = lambda peer: self.picks.append(None if peer is None else peer.name)

    def send(self, uri: str = "/", ip: str = "10.9.0.1"):
        conn = self.node.open_conn()
        return self.node.handle(conn, uri, "localhost", 80, ip, 0, self._done)

    def send_at(self, t: float, uri: str = "/") -> None:
        ev = Timeout(self.env, t - self.env.now)
        ev.callbacks.append(lambda _ev: self.send(uri))

    def run(self, until: float) -> None:
        self.env.run(until=until)

    def _done(self, req) -> None:
        self.done.append((self.env.now, req.status))
        self.node.close_conn(req.conn)

    def peer(self, address: str):
        return next(p for p in self.up.peers if p.name == address)


# --- balancing through the upstream ------------------------------------------------------------


def test_smooth_weighted_round_robin_sends_5_1_1_weights_as_a_a_b_a_c_a_a():
    c = Client(world(f"server {A} weight=5;\nserver {B};\nserver {C};"))
    for _ in range(14):
        c.send()
    seq = "".join({A: "a", B: "b", C: "c"}[p] for p in c.picks)
    assert seq == "aabacaa" * 2
    c.run(100)
    assert [c.peer(x).requests for x in (A, B, C)] == [10, 2, 2]
    assert c.done == [(10.0, 200)] * 14


def test_least_conn_picks_the_peer_with_fewest_active_connections_per_weight():
    c = Client(world(f"least_conn;\nserver {A} weight=3;\nserver {B};\nserver {C};",
                     backends={x: {"service_time": 1000} for x in (A, B, C)}))
    # all idle: a tie broken by round robin over the weights 3,1,1
    c.send()
    assert c.picks == [A]
    # a: 1/3 per weight, b and c: 0 -> b then c
    c.send()
    c.send()
    assert c.picks[1:] == [B, C]
    # a: 1/3 < b: 1/1, c: 1/1 -> a until a reaches 3 active (3/3 ties with b and c)
    c.send()
    c.send()
    assert c.picks[3:] == [A, A]
    assert [c.peer(x).active for x in (A, B, C)] == [3, 1, 1]


def test_least_conn_avoids_a_peer_whose_requests_are_still_running():
    c = Client(world(f"least_conn;\nserver {A};\nserver {B};",
                     backends={A: {"service_time": 500}, B: {"service_time": 10}}))
    for t in range(0, 100, 20):
        c.send_at(t)
    c.run(200)
    # a holds its first request for 500 ms; b finishes each of its own in 10 ms
    assert c.picks == [A, B, B, B, B]
    assert c.peer(A).active == 1 and c.peer(B).active == 0


def test_random_two_least_conn_prefers_the_less_loaded_of_its_two_picks():
    c = Client(world(f"random two least_conn;\nserver {A};\nserver {B};",
                     backends={x: {"service_time": 1000} for x in (A, B)}))
    up = c.up
    up.patch_server(1, {"down": True})
    for _ in range(5):
        c.send()
    assert c.picks == [A] * 5
    up.patch_server(1, {"down": False})
    # two peers: both are always picked, and b (fewer active) wins until it ties with a
    for _ in range(5):
        c.send()
    assert c.picks[5:] == [B] * 5
    assert (c.peer(A).active, c.peer(B).active) == (5, 5)


def test_random_without_two_spreads_requests_by_weight():
    c = Client(world(f"random;\nserver {A} weight=3;\nserver {B};"))
    for _ in range(4000):
        c.send()
    share = c.picks.count(A) / 4000
    assert 0.72 < share < 0.78


def test_consistent_hash_moves_about_one_in_n_keys_when_a_server_is_added():
    servers = "\n".join(f"server 10.0.0.{i}:80;" for i in range(1, 5))
    c = Client(world(f"hash $request_uri consistent;\n{servers}"))
    uris = [f"/obj/{i}" for i in range(3000)]
    for u in uris:
        c.send(u)
    before = dict(zip(uris, c.picks, strict=True))
    # the same key goes to the same server every time
    for u in uris[:200]:
        c.send(u)
    assert c.picks[3000:] == [before[u] for u in uris[:200]]
    c.up.add_server({"server": "10.0.0.5:80"}, has_resolver=False)
    n = len(c.picks)
    for u in uris:
        c.send(u)
    after = dict(zip(uris, c.picks[n:], strict=True))
    moved = [u for u in uris if after[u] != before[u]]
    # only the new server takes keys; it takes about 1/5 of them
    assert {after[u] for u in moved} == {"10.0.0.5:80"}
    assert 0.12 < len(moved) / len(uris) < 0.28


def test_plain_hash_remaps_most_keys_when_a_server_is_added():
    servers = "\n".join(f"server 10.0.0.{i}:80;" for i in range(1, 5))
    c = Client(world(f"hash $request_uri;\n{servers}"))
    uris = [f"/obj/{i}" for i in range(1000)]
    for u in uris:
        c.send(u)
    before = list(c.picks)
    c.up.add_server({"server": "10.0.0.5:80"}, has_resolver=False)
    for u in uris:
        c.send(u)
    moved = sum(1 for x, y in zip(before, c.picks[1000:], strict=True) if x != y)
    assert moved > 600


# --- passive failure detection -------------------------------------------------------------------


def failing_primary(extra: str = "") -> Client:
    """a (max_fails=2 fail_timeout=10s) is the only primary; b is a backup; a's backend is down.

    Every link has 1 ms one-way latency, so a refused connect fails 2 ms after it is tried.
    """
    c = Client(world(f"server {A} max_fails=2 fail_timeout=10s {extra};\nserver {B} backup;", latency_ms=1.0))
    c.cl.backend(A).set_state("down")
    return c


def test_peer_becomes_unavail_at_the_exact_time_of_its_second_failure_within_fail_timeout():
    c = failing_primary()
    a = c.peer(A)
    c.send_at(0)
    c.run(2)
    assert (a.state, a.fails, a.unavail) == ("up", 0, 0)
    c.run(2.001)
    assert (a.state, a.fails, a.unavail) == ("up", 1, 0)
    c.send_at(1000)
    c.run(1002)
    assert (a.state, a.fails) == ("up", 1)
    c.run(1002.001)
    assert (a.state, a.fails, a.unavail) == ("unavail", 2, 1)
    assert a.downstart_at(c.env.now) == 1002.0
    assert a.downtime_at(1500.0) == 498.0
    # both clients were served by the backup: connect 2 ms + request 1 ms + 10 ms + response 1 ms
    c.run(1100)
    assert c.done == [(16.0, 200), (1016.0, 200)]
    assert c.picks == [A, B, A, B]


def test_unavail_peer_is_skipped_then_back_up_after_fail_timeout_and_retried():
    c = failing_primary()
    a = c.peer(A)
    c.send_at(0)
    c.send_at(1000)
    c.send_at(5000)
    c.run(6000)
    # the third request went straight to the backup
    assert c.picks == [A, B, A, B, B]
    assert a.requests == 2
    c.run(11002)
    assert a.state == "unavail"
    c.run(11002.001)
    assert a.state == "up"
    assert a.downstart_at(c.env.now) is None
    assert a.downtime_at(c.env.now) == 10000.0
    # retried after fail_timeout: while that probe is out nginx lets no other request use the
    # peer, so it is unavail again from the probe on; its failure counts as a new unavail
    c.send_at(12000)
    c.run(12001)
    assert (a.state, a.fails, a.unavail) == ("unavail", 2, 1)
    assert a.downstart_at(c.env.now) == 12000.0
    c.run(12003)
    assert c.picks[5:] == [A, B]
    assert (a.state, a.fails, a.unavail) == ("unavail", 3, 2)
    assert a.downstart_at(c.env.now) == 12000.0
    c.run(22002)
    assert a.state == "unavail"
    c.run(30000)
    assert a.state == "up"
    assert a.downtime_at(c.env.now) == 10000.0 + 10002.0


def test_a_successful_probe_after_fail_timeout_ends_the_unavailable_period_when_it_answers():
    c = failing_primary()
    a = c.peer(A)
    c.send_at(0)
    c.send_at(1000)
    c.run(5000)
    c.cl.backend(A).set_state("up")
    c.send_at(12000)
    c.send_at(12005)  # while the probe is out, the backup serves
    c.run(12005.001)
    assert (a.state, a.downstart_at(c.env.now)) == ("unavail", 12000.0)
    # the probe answers at 12000 + connect 2 + request 1 + 10 + response 1
    c.run(12014)
    assert a.state == "unavail"
    c.run(12014.001)
    assert (a.state, a.downstart_at(c.env.now)) == ("up", None)
    assert a.downtime_at(c.env.now) == 10000.0 + 14.0
    assert c.picks[4:] == [A, B]
    c.send_at(12020)
    c.run(12021)
    assert c.picks[-1] == A


def test_recovered_backend_is_used_again_after_fail_timeout_and_its_failure_count_is_cleared():
    c = failing_primary()
    a = c.peer(A)
    c.send_at(0)
    c.send_at(1000)
    c.run(2000)
    assert a.state == "unavail"
    c.cl.backend(A).set_state("up")
    c.send_at(5000)  # still unavail: the backup serves
    c.send_at(12000)  # retried and succeeds
    c.send_at(13000)
    c.run(14000)
    assert c.picks[4:] == [B, A, A]
    assert a.state == "up"
    assert a.responses == [0, 2, 0, 0, 0]
    # the count was cleared: one new failure does not make it unavailable
    c.cl.backend(A).set_state("down")
    c.send_at(15000)
    c.run(15003)
    assert (a.state, a.fails, a.unavail) == ("up", 3, 1)


def test_a_success_after_the_window_clears_the_failure_count_but_one_within_it_does_not():
    c = failing_primary()
    a = c.peer(A)
    backend = c.cl.backend(A)
    c.send_at(0)  # failure 1 at t=2
    c.run(100)
    backend.set_state("up")
    c.send_at(5000)  # success inside the window: the count stays at 1
    c.run(5100)
    backend.set_state("down")
    c.send_at(6000)  # failure 2 at t=6002 -> unavail
    c.run(6003)
    assert (a.state, a.unavail) == ("unavail", 1)

    c = failing_primary()
    a = c.peer(A)
    backend = c.cl.backend(A)
    c.send_at(0)  # failure 1 at t=2
    c.run(100)
    backend.set_state("up")
    c.send_at(20000)  # success after the window: the count goes back to 0
    c.run(20100)
    backend.set_state("down")
    c.send_at(21000)  # failure at t=21002 is the first of a new window
    c.run(21003)
    assert (a.state, a.fails, a.unavail) == ("up", 2, 0)
    assert a.responses[1] == 1


def test_requests_already_running_that_fail_later_do_not_count_a_new_unavail():
    c = failing_primary()
    for _ in range(5):
        c.send()
    c.run(100)
    a = c.peer(A)
    # all five were sent to a before any failed; a became unavailable once, at t=2
    assert c.picks == [A] * 5 + [B] * 5
    assert (a.state, a.fails, a.unavail, a.downstart_at(c.env.now)) == ("unavail", 5, 1, 2.0)


def test_marking_an_unavail_peer_down_and_up_again_clears_its_failures():
    c = failing_primary()
    a = c.peer(A)
    c.send_at(0)
    c.send_at(1000)
    c.run(2000)
    c.up.patch_server(0, {"down": True})
    assert a.state == "down"
    c.up.patch_server(0, {"down": False})
    assert (a.state, a.downstart_at(c.env.now), a.downtime_at(c.env.now)) == ("up", None, 998.0)
    c.cl.backend(A).set_state("up")
    c.send_at(2500)
    c.run(2600)
    assert c.picks[-1] == A


def test_single_server_upstream_never_becomes_unavail():
    c = Client(world(f"server {A} max_fails=1 fail_timeout=10s;", latency_ms=1.0))
    c.cl.backend(A).set_state("down")
    for t in range(0, 500, 100):
        c.send_at(t)
    c.run(1000)
    a = c.peer(A)
    assert c.done == [(t + 2.0, 502) for t in range(0, 500, 100)]
    assert (a.state, a.fails, a.unavail, a.requests) == ("up", 5, 0, 5)
    assert a.downtime_at(c.env.now) == 0.0


def test_max_fails_zero_disables_failure_accounting():
    c = Client(world(f"server {A} max_fails=0;\nserver {B} backup;", latency_ms=1.0))
    c.cl.backend(A).set_state("down")
    for t in range(0, 500, 100):
        c.send_at(t)
    c.run(1000)
    a = c.peer(A)
    assert c.picks == [A, B] * 5
    assert (a.state, a.fails, a.unavail) == ("up", 5, 0)


# --- backup servers ------------------------------------------------------------------------------


def test_backup_takes_traffic_only_while_every_primary_is_unavailable():
    c = Client(world(f"server {A};\nserver {B};\nserver {C} backup;", latency_ms=1.0))
    for t in range(0, 1000, 100):
        c.send_at(t)
    c.run(1000)
    assert c.peer(C).requests == 0
    # both primaries fail once (max_fails=1): each request moves on, and the backup serves
    c.cl.backend(A).set_state("down")
    c.cl.backend(B).set_state("down")
    c.send_at(1000)
    c.run(1100)
    assert c.picks[-3:] == [A, B, C]
    assert c.peer(A).state == c.peer(B).state == "unavail"
    for t in range(2000, 3000, 100):
        c.send_at(t)
    c.run(3000)
    assert c.picks[-10:] == [C] * 10
    # a recovers: after fail_timeout it is tried, succeeds, and the backup is idle again
    c.cl.backend(A).set_state("up")
    for t in range(12000, 13000, 100):
        c.send_at(t)
    c.run(13000)
    # both primaries are eligible again; round robin tries b first (still down), then a
    assert c.picks[-11:] == [B, A] + [A] * 9
    assert c.peer(C).requests == 11
    assert all(status == 200 for _, status in c.done)


def test_backup_takes_traffic_when_primaries_are_marked_down_and_stops_when_one_comes_back():
    c = Client(world(f"server {A};\nserver {B};\nserver {C} backup;"))
    c.up.patch_server(0, {"down": True})
    c.up.patch_server(1, {"down": True})
    for _ in range(3):
        c.send()
    c.up.patch_server(1, {"down": False})
    for _ in range(3):
        c.send()
    assert c.picks == [C, C, C, B, B, B]
    assert c.peer(A).state == "down"


# --- max_conns and the queue ---------------------------------------------------------------------


def test_peer_never_exceeds_max_conns_and_without_a_queue_the_rest_get_502():
    c = Client(world(f"server {A} max_conns=2;\nserver {B} max_conns=1;",
                     backends={x: {"service_time": 100} for x in (A, B)}))
    for _ in range(5):
        c.send()
    assert (c.peer(A).active, c.peer(B).active) == (2, 1)
    c.run(1000)
    assert sorted(c.done) == [(0.0, 502), (0.0, 502), (100.0, 200), (100.0, 200), (100.0, 200)]
    assert c.picks == [A, B, A, None, None]


def test_queue_holds_requests_until_a_connection_frees_and_counts_overflows():
    c = Client(world(f"server {A} max_conns=1;", upstream_extra="queue 2 timeout=5s;",
                     backends={A: {"service_time": 100}}))
    for _ in range(4):
        c.send()
    a = c.peer(A)
    assert (a.active, c.up.queue_len, c.up.overflows) == (1, 2, 1)
    assert c.done == [(0.0, 502)]  # the fourth found the queue full
    c.run(150)
    assert (a.active, c.up.queue_len) == (1, 1)
    c.run(1000)
    assert c.done[1:] == [(100.0, 200), (200.0, 200), (300.0, 200)]
    assert a.requests == 3 and a.active == 0 and c.up.queue_len == 0


def test_queued_request_gets_502_when_no_server_frees_within_the_queue_timeout():
    c = Client(world(f"server {A} max_conns=1;", upstream_extra="queue 5 timeout=150ms;",
                     backends={A: {"service_time": 100}}))
    for _ in range(3):
        c.send()
    c.run(1000)
    # the second is served at 100; the third waits 150 ms, then the client gets 502
    assert c.done == [(100.0, 200), (150.0, 502), (200.0, 200)]
    assert c.up.overflows == 0 and c.up.queue_len == 0
    assert c.peer(A).requests == 2


def test_queue_also_holds_requests_while_every_server_is_down():
    c = Client(world(f"server {A};\nserver {B};", upstream_extra="queue 1 timeout=1s;"))
    c.up.patch_server(0, {"down": True})
    c.up.patch_server(1, {"down": True})
    c.send()
    assert c.up.queue_len == 1
    c.run(2000)
    assert c.done == [(1000.0, 502)]


# --- slow_start ----------------------------------------------------------------------------------


def slow_starter() -> Client:
    """a (weight 10, slow_start=10s) fails at t=0 and is unavailable until t=1000; b has weight 10."""
    c = Client(world(f"server {A} weight=10 max_fails=1 fail_timeout=1s slow_start=10s;\n"
                     f"server {B} weight=10;"))
    c.cl.backend(A).set_state("down")
    c.send()
    c.run(0.001)
    c.cl.backend(A).set_state("up")
    assert c.peer(A).state == "unavail"
    return c


def test_slow_start_ramps_lb_weight_linearly_from_one_to_weight_after_unavail():
    c = slow_starter()
    a = c.peer(A)
    expected = {500: 10, 1000: 10, 1000.001: 1, 2000: 1, 2000.001: 2, 3500: 3, 6000: 5,
                10500: 10, 11000: 10, 20000: 10}
    seen = {}
    for t in expected:
        c.run(t)
        seen[t] = a.lb_weight
    assert seen == expected
    assert c.peer(B).lb_weight == 10


def test_slow_start_share_of_requests_follows_the_ramp():
    c = slow_starter()
    # one request every 10 ms through the ramp; 100 per second, each second at one lb_weight
    for k in range(10):
        for j in range(100):
            c.send_at(1000 + k * 1000 + 5 + 10 * j)
    c.run(12000)
    picks = c.picks[2:]  # the failed attempt and its retry come first
    for k in range(10):
        window = picks[k * 100 : (k + 1) * 100]
        expected = 100 * (k + 1) / (k + 11)
        assert abs(window.count(A) - expected) <= 2, (k, window.count(A), expected)


def test_slow_start_is_ignored_for_a_single_server():
    c = Client(world(f"server {A} weight=10 max_fails=1 fail_timeout=1s slow_start=10s;"))
    c.cl.backend(A).set_state("down")
    c.send()
    c.run(3000)
    assert c.peer(A).lb_weight == 10


# --- run-time configuration ----------------------------------------------------------------------


def test_added_servers_get_new_ids_and_ids_are_never_reused():
    c = Client(world(f"server {A};\nserver {B};"))
    up = c.up
    assert [p.id for p in up.peers] == [0, 1]
    p = up.add_server({"server": C}, has_resolver=False)
    assert p.id == 2
    up.remove_server(2)
    up.remove_server(0)
    assert up.add_server({"server": D}, has_resolver=False).id == 3
    assert up.add_server({"server": A}, has_resolver=False).id == 4
    assert [p.id for p in up.peers] == [1, 3, 4]


def test_added_server_has_nginx_defaults_and_port_80():
    c = Client(world(f"server {A};"))
    p = c.up.add_server({"server": "10.0.0.9"}, has_resolver=False)
    assert p.conf_dict("http") == {
        "id": 1, "server": "10.0.0.9:80", "weight": 1, "max_conns": 0, "max_fails": 1,
        "fail_timeout": "10s", "slow_start": "0s", "route": "", "backup": False, "down": False,
    }
    assert p.state == "up"


def test_added_server_takes_traffic_at_once():
    c = Client(world(f"server {A};"))
    c.up.add_server({"server": B, "weight": 2}, has_resolver=False)
    for _ in range(3):
        c.send()
    assert sorted(c.picks) == [A, B, B]


def test_patch_changes_parameters_and_weight_takes_effect():
    c = Client(world(f"server {A};\nserver {B};"))
    body = {"weight": 3, "max_fails": 0, "fail_timeout": "30s", "slow_start": "5s", "max_conns": 7}
    p = c.up.patch_server(1, body)
    assert (p.weight, p.max_fails, p.fail_timeout_ms, p.slow_start_ms, p.max_conns) == (3, 0, 30000, 5000, 7)
    for _ in range(8):
        c.send()
    assert c.picks.count(B) == 6


@pytest.mark.parametrize("flag,state", [("drain", "draining"), ("down", "down")])
def test_drain_and_down_stop_new_requests_while_running_ones_finish(flag, state):
    c = Client(world(f"server {A};\nserver {B};", backends={A: {"service_time": 100}}))
    c.send()
    assert c.picks == [A]
    c.up.patch_server(0, {flag: True})
    assert c.peer(A).state == state
    for _ in range(4):
        c.send()
    assert c.picks[1:] == [B] * 4
    c.run(200)
    assert c.peer(A).responses[1] == 1 and c.peer(A).active == 0
    c.up.patch_server(0, {flag: False})
    assert c.peer(A).state == "up"


def test_removed_server_with_active_requests_is_a_zombie_until_they_finish():
    c = Client(world(f"server {A};\nserver {B};", backends={A: {"service_time": 100}}))
    c.send()
    c.send()
    a = c.peer(A)
    remaining = c.up.remove_server(0)
    assert [p.id for p in remaining] == [1]
    assert c.up.zombies == 1
    c.send()
    assert c.picks[-1] == B
    c.run(99)
    assert c.up.zombies == 1
    c.run(101)
    assert c.up.zombies == 0
    assert (a.active, a.responses[1]) == (0, 1)
    assert sorted(c.done) == [(10.0, 200), (10.0, 200), (100.0, 200)]


def test_removing_an_idle_server_leaves_no_zombie():
    c = Client(world(f"server {A};\nserver {B};"))
    c.up.remove_server(1)
    assert c.up.zombies == 0
    with pytest.raises(errors.UpstreamServerNotFound) as e:
        c.up.remove_server(1)
    assert e.value.text == 'server with ID "1" does not exist'


def validation_world() -> Client:
    return Client(world(f"server {A};\nserver {B} backup;"))


@pytest.mark.parametrize(
    "body,exc,text",
    [
        ({"weight": 1}, errors.UpstreamConfFormatError, 'missing "server" argument'),
        ({"server": B, "color": 1}, errors.UpstreamConfFormatError, 'unknown parameter "color"'),
        ({"server": B, "weight": [1]}, errors.UpstreamConfFormatError, "nested object or list"),
        ({"server": B, "weight": "2"}, errors.UpstreamConfFormatError, 'invalid "weight" value'),
        ({"server": B, "down": "yes"}, errors.UpstreamConfFormatError, 'invalid "down" value'),
        ({"server": B, "id": 7}, errors.UpstreamConfFormatError, 'unknown parameter "id"'),
        ({"server": 5}, errors.UpstreamConfFormatError, 'invalid "server" value'),
        ({"server": "10.0.0.9:99999"}, errors.UpstreamBadAddress, 'invalid port in "10.0.0.9:99999"'),
        ({"server": "bad host"}, errors.UpstreamBadAddress, 'invalid address "bad host"'),
        ({"server": "10.0.0.9:80", "service": "http"}, errors.UpstreamBadAddress,
         'service upstream "10.0.0.9:80" may not have port'),
        ({"server": "10.0.0.9", "service": "http"}, errors.UpstreamBadAddress,
         'service upstream "10.0.0.9" requires domain name'),
        ({"server": B, "weight": 0}, errors.UpstreamBadWeight, 'invalid "weight"'),
        ({"server": B, "weight": 1_000_001}, errors.UpstreamBadWeight, 'invalid "weight"'),
        ({"server": B, "max_conns": -1}, errors.UpstreamBadMaxConns, 'invalid "max_conns"'),
        ({"server": B, "max_fails": -1}, errors.UpstreamBadMaxFails, 'invalid "max_fails"'),
        ({"server": B, "fail_timeout": "ten"}, errors.UpstreamBadFailTimeout, 'invalid "fail_timeout"'),
        ({"server": B, "slow_start": "1x"}, errors.UpstreamBadSlowStart, 'invalid "slow_start"'),
        ({"server": B, "route": "r" * 33}, errors.UpstreamBadRoute, "route is too long"),
        ({"server": "example.com", "service": ""}, errors.UpstreamBadService, '"service" is empty'),
        ({"server": "example.com"}, errors.UpstreamConfNoResolver,
         'no resolver defined to resolve "example.com"'),
        ({"server": A}, errors.EntryExists, f'server "{A}" already exists'),
    ],
)
def test_adding_an_invalid_server_raises_nginx_error_with_its_text(body, exc, text):
    c = validation_world()
    with pytest.raises(exc) as e:
        c.up.add_server(body, has_resolver=False)
    assert type(e.value) is exc
    assert e.value.text == text
    assert [p.id for p in c.up.peers] == [0, 1]


def test_a_backup_can_be_added_unless_the_balancing_method_forbids_backups():
    # round robin without a backup in the configuration: NGINX Plus adds it (UpstreamNoBackup is
    # only for hash, ip_hash and random, which cannot have backups)
    c = Client(world(f"server {A};"))
    added = c.up.add_server({"server": B, "backup": True}, has_resolver=False)
    assert added.backup is True and c.up.backups == [added] and added not in c.up.primary
    for method in ("hash $request_uri", "ip_hash", "random"):
        c = Client(world(f"{method};\nserver {A};"))
        with pytest.raises(errors.UpstreamNoBackup) as e:
            c.up.add_server({"server": B, "backup": True}, has_resolver=False)
        assert e.value.text == 'upstream "backend" has no backup'
        assert len(c.up.peers) == 1
    c = validation_world()
    assert c.up.add_server({"server": C, "backup": True}, has_resolver=False).backup is True
    # the same address may be both a primary and a backup
    assert c.up.add_server({"server": A, "backup": True}, has_resolver=False).id == 3


@pytest.mark.parametrize(
    "body,exc,text",
    [
        ({"backup": True}, errors.UpstreamConfFormatError, 'invalid "backup" value'),
        ({"id": 5}, errors.UpstreamConfFormatError, 'invalid "id" value'),
        ({"server": "example.com"}, errors.UpstreamBadAddress, 'invalid "server" argument "example.com"'),
        ({"weight": -2}, errors.UpstreamBadWeight, 'invalid "weight"'),
        ({"nope": 1}, errors.UpstreamConfFormatError, 'unknown parameter "nope"'),
    ],
)
def test_patching_with_invalid_values_raises_nginx_error_and_changes_nothing(body, exc, text):
    c = validation_world()
    before = c.up.servers_conf()
    with pytest.raises(exc) as e:
        c.up.patch_server(0, body)
    assert e.value.text == text
    assert c.up.servers_conf() == before


def test_patch_can_move_a_server_to_another_address_keeping_its_id():
    c = validation_world()
    p = c.up.patch_server(0, {"server": C, "id": 0})
    assert (p.id, p.name) == (0, C)
    c.send()
    assert c.picks == [C]


def test_server_added_with_a_service_keeps_its_address():
    c = validation_world()
    p = c.up.add_server({"server": "example.com", "service": "http"}, has_resolver=True)
    assert p.conf_dict("http")["service"] == "http"
    with pytest.raises(errors.UpstreamServerImmutable) as e:
        c.up.patch_server(p.id, {"server": C})
    assert e.value.text == f'server "{p.id}" address is immutable'
    with pytest.raises(errors.UpstreamConfFormatError) as e:
        c.up.patch_server(p.id, {"service": "other"})
    assert e.value.text == 'invalid "service" value'
    assert c.up.patch_server(p.id, {"weight": 4}).weight == 4


def test_static_upstream_refuses_run_time_changes():
    conf = (
        "events {}\nhttp {\n  upstream plain {\n    server 10.0.0.1:80;\n  }\n"
        "  server {\n    listen 80;\n    location / {\n      proxy_pass http://plain;\n    }\n  }\n}\n"
    )
    sc = scenario.loads(yaml.safe_dump({"nodes": 1, "nginx_conf_inline": conf}), filename="t.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    up = cl.nodes["node1"].upstream_named("plain")
    assert "plain" not in cl.nodes["node1"].upstreams
    for call in (lambda: up.add_server({"server": B}, has_resolver=False),
                 lambda: up.patch_server(0, {"down": True}),
                 lambda: up.remove_server(0)):
        with pytest.raises(errors.UpstreamStatic) as e:
            call()
        assert e.value.text == "upstream is static"
