"""Simulated clients (sim.workload.clients): arrival processes, rate curves, Zipf paths, request sizes,
client keepalive, start/stop and node targeting.

Each test runs one small seeded scenario and reads what reached the node: every request a node
accepts is recorded (through ``Node.on_request``) with its arrival time and URI.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import yaml

from sim.cluster import cluster, scenario

CONF = """\
events {}
http {
  keepalive_timeout %s;
  upstream backend { zone backend 64k; server 10.0.0.1:80; }
  server { listen 80; status_zone site; location / { proxy_pass http://backend; } }
}
"""


def run(workloads: list[dict], *, duration: str = "10s", nodes: int = 1, keepalive_timeout: str = "75s",
        seed: int = 5) -> tuple[cluster.Cluster, dict[str, list[tuple[float, str]]]]:
    data = {
        "seed": seed,
        "duration": duration,
        "nodes": nodes,
        "network": {"latency_ms": 0},
        "nginx_conf_inline": CONF % keepalive_timeout,
        "backend_defaults": {"service_time": 10, "header_bytes": 0, "response_size": 0},
        "workloads": workloads,
    }
    cl = cluster.Cluster(scenario.loads(yaml.safe_dump(data), filename="w.yaml"), sample=False)
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for node in cl.nodes.values():
        node.on_request = lambda req, _name=node.name: seen[_name].append((req.t0, req.uri))
    cl.run()
    return cl, seen


def within(observed: int, expected: float, sigmas: float = 4.0) -> bool:
    """A Poisson count close to its mean."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected)


def test_constant_arrivals_are_exactly_evenly_spaced():
    cl, seen = run([{"name": "c", "rate": 10, "arrivals": "constant"}])
    times = [t for t, _ in seen["node1"]]
    # one every 100 ms from t=100 up to the end of the 10 s run (the one at 10 s is not in it)
    assert times == [100.0 * k for k in range(1, 100)]
    stats = cl.workloads[0].stats["node1"]
    assert (stats.sent, stats.completed, stats.refused, stats.statuses) == (99, 99, 0, {200: 99})


def test_poisson_arrival_count_is_close_to_rate_times_duration():
    cl, seen = run([{"name": "p", "rate": 200}], duration="100s")
    n = len(seen["node1"])
    assert within(n, 200 * 100)
    assert cl.workloads[0].stats["node1"].sent == n
    # inter-arrival gaps are exponential: mean 5 ms, and about 1/e of them longer than the mean
    times = [t for t, _ in seen["node1"]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert abs(sum(gaps) / len(gaps) - 5.0) < 0.15
    assert abs(sum(g > 5.0 for g in gaps) / len(gaps) - math.exp(-1)) < 0.015


def test_poisson_counts_in_disjoint_windows_vary_like_a_poisson_process():
    _, seen = run([{"name": "p", "rate": 100}], duration="200s")
    per_second = Counter(int(t // 1000) for t, _ in seen["node1"])
    counts = [per_second.get(s, 0) for s in range(200)]
    mean = sum(counts) / len(counts)
    variance = sum((c - mean) ** 2 for c in counts) / (len(counts) - 1)
    assert abs(mean - 100) < 3
    assert 0.75 < variance / mean < 1.3


def test_rate_curve_arrivals_follow_the_piecewise_linear_curve():
    # 0 -> 200 req/s over 10 s, then flat at 200 req/s for 10 s
    _, seen = run([{"name": "r", "rate_curve": [["0s", 0], ["10s", 200], ["20s", 200]]}], duration="20s")
    times = [t for t, _ in seen["node1"]]
    # expected counts are the integral of the curve over each window
    for lo, hi, expected in [(0, 5000, 250), (5000, 10000, 750), (10000, 15000, 1000), (15000, 20000, 1000)]:
        observed = sum(lo <= t < hi for t in times)
        assert within(observed, expected), (lo, hi, observed, expected)
    assert sum(t < 1000 for t in times) < 30


def test_rate_curve_holds_its_last_rate_after_the_last_point():
    _, seen = run([{"name": "r", "rate_curve": [["0s", 50], ["2s", 50], ["4s", 0]]}], duration="10s")
    times = [t for t, _ in seen["node1"]]
    assert within(sum(t < 2000 for t in times), 100)
    assert within(sum(2000 <= t < 4000 for t in times), 50)
    assert sum(t >= 4000 for t in times) == 0


def test_zipf_paths_are_ordered_by_rank_with_the_expected_frequencies():
    _, seen = run([{"name": "z", "rate": 500, "paths": {"count": 5, "zipf": 1.0}}], duration="20s")
    freq = Counter(uri for _, uri in seen["node1"])
    n = sum(freq.values())
    ranks = [f"/item/{i}" for i in range(5)]
    counts = [freq[u] for u in ranks]
    assert counts == sorted(counts, reverse=True)
    assert set(freq) == set(ranks)
    harmonic = sum(1 / k for k in range(1, 6))
    for k, c in enumerate(counts, start=1):
        p = 1 / k / harmonic
        assert abs(c - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (k, c, n * p)


def test_zipf_path_indexes_are_the_draws_numpy_choice_gives_for_the_same_stream():
    # the workload searches the cumulative weights itself (computed once per workload, where
    # Generator.choice checks and sums the weights on every call): the same values are required
    import numpy as np

    from sim.core.rng import Streams

    cl, _ = run([{"name": "z", "rate": 10, "paths": {"count": 50, "zipf": 1.2}}], duration="1s")
    w = cl.workloads[0]
    mine, numpys = Streams(9).get("a"), Streams(9).get("a")
    for k in (1, 4096, 333, 4096):
        got = w.path_indexes(mine, k)
        assert np.array_equal(got, numpys.choice(50, k, p=w.path_probs))
    assert mine.random() == numpys.random()  # and both consumed the stream alike


def test_zipf_zero_is_uniform_and_an_explicit_path_list_is_used_as_given():
    uniform = {"name": "u", "rate": 500, "paths": {"count": 4, "zipf": 0, "prefix": "/u/"}}
    _, seen = run([uniform], duration="20s")
    freq = Counter(uri for _, uri in seen["node1"])
    n = sum(freq.values())
    assert sorted(freq) == ["/u/0", "/u/1", "/u/2", "/u/3"]
    assert all(abs(c - n / 4) <= 4 * math.sqrt(n * 3 / 16) for c in freq.values())
    _, seen = run([{"name": "l", "rate": 100, "paths": {"list": ["/a", "/b"], "zipf": 0}}])
    assert {uri for _, uri in seen["node1"]} == {"/a", "/b"}


def test_request_sizes_come_from_their_distribution():
    cl, seen = run([{"name": "s", "rate": 50, "arrivals": "constant", "request_size": 300}])
    assert cl.nodes["node1"].server_zones["site"].received == 300 * len(seen["node1"])
    cl, seen = run([{"name": "s", "rate": 500, "request_size": {"dist": "uniform", "low": 100, "high": 900}}])
    mean = cl.nodes["node1"].server_zones["site"].received / len(seen["node1"])
    assert abs(mean - 500) < 15


def test_keepalive_reuses_each_connection_for_keepalive_requests_requests():
    # one request every 100 ms, each answered in 10 ms: no two requests ever overlap
    cl, seen = run([{"name": "k", "rate": 10, "arrivals": "constant", "keepalive_requests": 4}])
    node = cl.nodes["node1"]
    assert node.requests_total == 99
    assert node.connections_accepted == 25  # ceil(99 / 4)
    # the last connection carried 3 requests and waits idle for the 4th
    assert (node.connections_idle, node.connections_active) == (1, 0)


def test_keepalive_with_poisson_arrivals_needs_roughly_requests_over_keepalive_requests_connections():
    cl, _ = run([{"name": "k", "rate": 50, "keepalive_requests": 5}], duration="60s")
    node = cl.nodes["node1"]
    ideal = node.requests_total / 5
    # overlapping requests open a few extra connections, never fewer than the ideal
    assert ideal <= node.connections_accepted < 1.1 * ideal


def test_without_keepalive_every_request_opens_a_connection():
    cl, _ = run([{"name": "k", "rate": 50}])
    node = cl.nodes["node1"]
    assert node.connections_accepted == node.requests_total
    assert node.connections_idle == 0


def test_idle_connections_are_closed_after_keepalive_timeout():
    # a request every 5 s; the connection idles 5 s, longer than keepalive_timeout 2s
    cl, _ = run([{"name": "k", "rate": 0.2, "arrivals": "constant", "keepalive_requests": 100}],
                duration="60s", keepalive_timeout="2s")
    node = cl.nodes["node1"]
    assert node.requests_total == 11
    assert node.connections_accepted == 11
    # with a longer keepalive_timeout the one connection carries them all
    cl, _ = run([{"name": "k", "rate": 0.2, "arrivals": "constant", "keepalive_requests": 100}],
                duration="60s", keepalive_timeout="10s")
    assert cl.nodes["node1"].connections_accepted == 1


def test_workload_runs_between_start_and_stop_on_its_nodes_only():
    w = {"name": "s", "rate": 10, "arrivals": "constant", "start": "2s", "stop": "5s", "nodes": ["node2"]}
    _, seen = run([w], nodes=2)
    assert seen["node1"] == []
    times = [t for t, _ in seen["node2"]]
    assert times == [2000.0 + 100.0 * k for k in range(1, 30)]


def test_each_node_of_a_workload_gets_its_own_independent_arrivals():
    cl, seen = run([{"name": "p", "rate": 100}], nodes=2)
    a, b = [t for t, _ in seen["node1"]], [t for t, _ in seen["node2"]]
    assert within(len(a), 1000) and within(len(b), 1000)
    assert a[:20] != b[:20]
    assert {n: s.sent for n, s in cl.workloads[0].stats.items()} == {"node1": len(a), "node2": len(b)}


def test_bypass_share_marks_that_share_of_requests_nocache():
    _, seen = run([{"name": "b", "rate": 500, "bypass_share": 0.25}])
    uris = [u for _, u in seen["node1"]]
    share = sum(u.endswith("?nocache=1") for u in uris) / len(uris)
    assert abs(share - 0.25) < 0.03
