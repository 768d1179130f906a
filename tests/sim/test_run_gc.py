"""Cluster.run raises the cyclic collector's thresholds (youngest and oldest generation) while it
runs, and only then."""

from __future__ import annotations

import gc

import yaml
from simpy.events import Timeout

from sim.cluster import cluster, scenario

DATA = {
    "seed": 1,
    "duration": "2s",
    "nodes": 1,
    "nginx_conf_inline": "events {}\nhttp {\n  upstream b { zone b 64k; server 10.0.0.1:80; }\n"
                         "  server { listen 80; location / { proxy_pass http://b; } }\n}\n",
    "workloads": [{"name": "w", "rate": 50}],
}


def test_the_threshold_is_raised_during_a_run_and_restored_after():
    cl = cluster.Cluster(scenario.loads(yaml.safe_dump(DATA), filename="gc.yaml"), sample=False)
    seen = []
    Timeout(cl.env, 1000.0).callbacks.append(lambda _ev: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        cl.run()
        assert seen == [(cluster.RUN_GC_THRESHOLD, 10, cluster.RUN_GC_OLDEST)]
        assert gc.get_threshold() == (700, 10, 10)
        # a caller's higher thresholds are kept, and a disabled collector (0) is left as it is
        for setting, during in (((50_000, 10, 5000), (50_000, 10, 5000)),
                                ((50_000, 20, 10), (50_000, 20, cluster.RUN_GC_OLDEST)),
                                ((0, 10, 10), (0, 10, 10))):
            gc.set_threshold(*setting)
            Timeout(cl.env, 500.0).callbacks.append(lambda _ev: seen.append(gc.get_threshold()))
            cl.run(cl.env.now + 1000.0)
            assert seen[-1] == during
            assert gc.get_threshold() == setting
    finally:
        gc.set_threshold(*before)
    assert cl.workloads[0].stats["node1"].completed > 0
