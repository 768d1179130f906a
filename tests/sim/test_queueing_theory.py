"""The model against queueing theory: one backend behind one node is an M/M/c queue.

Poisson arrivals, exponential service (mean 20 ms), ``c`` backend slots, no network latency
and empty requests and responses: the client's mean response time must match the M/M/c mean
sojourn time (Erlang C waiting time plus the service time) within 5%. The seed and the run
length (about 31k requests each) are fixed; with them the estimate is within 0.5% of theory.
Sampling noise is what the band absorbs: over seeds 1..10 at these lengths, c=4 lands within
4.1% every time and c=1 (more strongly autocorrelated) within 2% for 7 seeds, 7.1% at worst.
"""

from __future__ import annotations

import math

import pytest
import yaml

from sim.cluster import cluster, scenario

MEAN_SERVICE_MS = 20.0
UTILISATION = 0.7


def erlang_c_sojourn_ms(c: int, arrivals_per_ms: float, mean_service_ms: float) -> float:
    """Mean time in an M/M/c system: P(wait) / (c mu - lambda) + 1 / mu."""
    mu = 1.0 / mean_service_ms
    a = arrivals_per_ms / mu
    rho = a / c
    assert rho < 1
    tail = a**c / math.factorial(c) / (1 - rho)
    p_wait = tail / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    return p_wait / (c * mu - arrivals_per_ms) + mean_service_ms


def test_erlang_c_formula_reduces_to_mm1():
    lam = 0.035
    assert erlang_c_sojourn_ms(1, lam, 20.0) == pytest.approx(1 / (1 / 20.0 - lam))


def mmc_world(c: int, seconds: int, seed: int) -> cluster.Cluster:
    rate = UTILISATION * c / MEAN_SERVICE_MS * 1000.0  # requests per second
    conf = (
        "events {}\nhttp {\n  upstream backend {\n    server 10.0.0.1:80;\n  }\n"
        "  server {\n    listen 80;\n    location / {\n      proxy_pass http://backend;\n    }\n  }\n}\n"
    )
    data = {
        "seed": seed,
        "duration": f"{seconds}s",
        "nodes": [{"name": "node1", "worker_connections": 100_000}],
        "network": {"latency_ms": 0},
        "nginx_conf_inline": conf,
        "backends": {
            "10.0.0.1:80": {
                "concurrency": c,
                "service_time": {"dist": "exponential", "mean": MEAN_SERVICE_MS},
                "header_bytes": 0,
                "response_size": 0,
            }
        },
        "workloads": [
            {"name": "clients", "rate": rate, "arrivals": "poisson", "request_size": 0, "paths": {"count": 1}}
        ],
    }
    return cluster.Cluster(scenario.loads(yaml.safe_dump(data), filename="mmc.yaml"), sample=False)


@pytest.mark.parametrize("c,seconds", [(1, 900), (4, 225)])
def test_mean_response_time_matches_mm_c_within_5_percent(c, seconds):
    cl = mmc_world(c, seconds, seed=1)
    cl.run()
    node = cl.nodes["node1"]
    rate_per_ms = UTILISATION * c / MEAN_SERVICE_MS
    expected_requests = rate_per_ms * seconds * 1000
    assert node.latency.n >= 20_000
    assert abs(node.latency.n - expected_requests) < 3 * math.sqrt(expected_requests)
    theory = erlang_c_sojourn_ms(c, rate_per_ms, MEAN_SERVICE_MS)
    assert node.latency.mean == pytest.approx(theory, rel=0.05)
    # every request reached the one backend and none failed
    peer = node.upstream_named("backend").peers[0]
    assert peer.fails == 0
    assert peer.responses[1] == node.latency.n
