"""Determinism: the same scenario and seed give byte-identical counters and time series.

The scenario uses every source of randomness the HTTP model has (Poisson arrivals, Zipf paths,
request sizes, exponential service times, status mixes, random balancing, lossy links) plus a
fault timeline; the dump holds every counter of every node, upstream, peer, zone and backend,
the latency histogram and the sampler's rows.
"""

from __future__ import annotations

import json

import pytest
import yaml

from sim.cluster import cluster, scenario

CONF = """\
events {}
http {
  upstream backend {
    zone backend 64k;
    random two least_conn;
    server 10.0.0.1:80 max_fails=2 fail_timeout=1s;
    server 10.0.0.2:80 weight=2 max_conns=8 max_fails=5 fail_timeout=1s;
    server 10.0.0.3:80 max_fails=5 fail_timeout=1s;
    keepalive 4;
  }
  upstream ordered {
    zone ordered 64k;
    server 10.0.0.1:80;
    server 10.0.0.2:80 backup;
  }
  server {
    listen 80;
    status_zone site;
    location / {
      proxy_pass http://backend;
      proxy_next_upstream error timeout http_500;
      proxy_read_timeout 300ms;
    }
    location /o/ {
      status_zone ordered_loc;
      proxy_pass http://ordered;
    }
  }
}
"""

SCENARIO = {
    "seed": 7,
    "duration": "5s",
    "sample_interval": "500ms",
    "nodes": 2,
    "network": {"latency_ms": 0.5, "loss": 0.001},
    "nginx_conf_inline": CONF,
    "backend_defaults": {
        "concurrency": 16,
        "service_time": {"dist": "exponential", "mean": 15},
        "response_size": {"dist": "lognormal", "mean": 3000, "sigma": 0.8},
        "status_mix": {200: 0.95, 404: 0.03, 500: 0.02},
    },
    "faults": [
        {"at": "1s", "action": "backend_down", "target": "10.0.0.1:80", "duration": "1500ms"},
        {"at": "2s", "action": "cut_link", "target": "node2|10.0.0.3:80", "duration": "1s"},
        {"at": "3s", "action": "backend_slow", "target": "10.0.0.2:80", "factor": 30, "duration": "1s"},
    ],
    "workloads": [
        {"name": "web", "rate": 300, "keepalive_requests": 3, "paths": {"count": 50, "zipf": 1.1},
         "request_size": {"dist": "uniform", "low": 100, "high": 900}},
        {"name": "ordered", "rate": 40, "arrivals": "constant", "nodes": ["node2"],
         "paths": {"prefix": "/o/"}},
    ],
}


def dump(cl: cluster.Cluster) -> bytes:
    """Every counter of the cluster, as canonical JSON."""
    out: dict = {"now": cl.env.now, "nodes": {}, "backends": {}, "workloads": {}}
    for name, node in cl.nodes.items():
        n: dict = {
            "requests": [node.requests_total, node.requests_current],
            "connections": [node.connections_accepted, node.connections_dropped, node.connections_active,
                            node.connections_idle],
            "latency": [node.latency.n, node.latency.total, node.latency.counts],
            "server_zones": {},
            "location_zones": {},
            "upstreams": {},
        }
        for zname, z in node.server_zones.items():
            n["server_zones"][zname] = [z.requests, z.processing, z.discarded, z.received, z.sent,
                                        z.responses, sorted(z.codes.items())]
        for zname, z in node.location_zones.items():
            n["location_zones"][zname] = [z.requests, z.discarded, z.received, z.sent, z.responses,
                                          sorted(z.codes.items())]
        for uname, up in node.upstreams.items():
            peers = []
            for p in up.peers:
                peers.append({
                    "id": p.id, "state": p.state, "requests": p.requests, "responses": p.responses,
                    "codes": sorted(p.codes.items()), "sent": p.sent, "received": p.received,
                    "fails": p.fails, "unavail": p.unavail, "active": p.active, "selected": p.selected,
                    "header_time": p.header_time,
                    "response_time": p.response_time, "downtime": p.downtime_at(cl.env.now), "hist": p.hist,
                    "weights": [p.effective_weight, p.current_weight],
                })
            n["upstreams"][uname] = {"peers": peers, "keepalive": up.keepalive,
                                     "queue": [up.queue_len, up.overflows]}
        out["nodes"][name] = n
    for addr, b in sorted(cl.backends.items()):
        out["backends"][addr] = [b.requests, b.refused, b.max_queue, b.busy]
    for w in cl.workloads:
        out["workloads"][w.spec.name] = {
            node: [s.sent, s.completed, s.refused, s.discarded, sorted(s.statuses.items())]
            for node, s in w.stats.items()
        }
    out["rows"] = cl.sampler.rows
    return json.dumps(out, sort_keys=True).encode()


def run(seed: int | None = None) -> bytes:
    sc = scenario.loads(yaml.safe_dump(SCENARIO), filename="determinism.yaml")
    cl = cluster.Cluster(sc, seed=seed)
    cl.run()
    return dump(cl)


def test_same_scenario_and_seed_give_byte_identical_counters_and_samples():
    first = run()
    second = run()
    assert first == second
    data = json.loads(first)
    # the run did something worth comparing: traffic, failures, 5xx and samples on both nodes
    assert data["nodes"]["node1"]["requests"][0] > 1000
    assert any(p["fails"] for p in data["nodes"]["node1"]["upstreams"]["backend"]["peers"])
    assert data["nodes"]["node2"]["server_zones"]["site"][5][4] > 0
    assert len(data["rows"]) == 2 * 9


def test_a_different_seed_gives_different_counters():
    same = run(7)
    assert same == run()
    assert run(8) != same


def test_seed_given_to_the_scenario_and_to_the_cluster_are_the_same_thing():
    sc = scenario.loads(yaml.safe_dump({**SCENARIO, "seed": 8}), filename="determinism.yaml")
    cl = cluster.Cluster(sc)
    cl.run()
    assert dump(cl) == run(8)


@pytest.mark.parametrize("form", ["Batched", "Draws"])
def test_batched_draws_hand_out_one_numpy_draw_in_order_and_draw_again_only_when_used_up(form):
    from sim.core.rng import Batched, Draws, Streams

    calls = []
    gen = Streams(5).get("x")

    def draw(n):
        calls.append(n)
        return gen.random(n)

    nxt = Batched(draw, 3) if form == "Batched" else Draws(draw, 3).next
    assert calls == []  # nothing is drawn before the first value is asked for
    got = [nxt() for _ in range(7)]
    assert calls == [3, 3, 3]
    assert got == Streams(5).get("x").random(9).tolist()[:7]
    assert all(type(v) is float for v in got)


def test_draws_hand_out_integer_draws_as_ints():
    from sim.core.rng import Draws, Streams

    ints = Draws(lambda n: Streams(6).get("y").integers(0, 100, n), 4)
    got_ints = [ints.next_int() for _ in range(4)]
    assert got_ints == Streams(6).get("y").integers(0, 100, 4).tolist()
    assert all(type(v) is int for v in got_ints)


def test_a_distribution_gives_the_same_values_as_draws_and_as_a_sampler():
    from sim.core import dists
    from sim.core.rng import Streams

    for spec in (dists.DistSpec("constant", (7.0,)), dists.DistSpec("lognormal", (20.0, 0.5)),
                 dists.DistSpec("empirical", ((1.0, 2.0, 3.0), (1.0, 1.0, 2.0)))):
        sample = spec.sampler(Streams(3).get("d"), batch=8)
        draws = spec.draws(Streams(3).get("d"), batch=8)
        assert [draws.next() for _ in range(20)] == [sample() for _ in range(20)], spec.kind
