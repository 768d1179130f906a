"""Load test: data-plane requests through every node, and counters that must agree exactly.

Run against ``clustersim serve scenarios/loadtest-traffic-counters.yaml`` (no background
workload), with ``--host`` the control endpoint. FastHttpUsers send GETs to random nodes and to
both name-based servers (``app.example.com``, ``www.example.com``), mostly proxied to the
upstream ``backend`` and sometimes the ``return`` location ``= /ping``, and count every answered
request per node and server zone on the client side.

When the run stops (users finish their request in flight; locust's ``--stop-timeout``), the
checker waits until no request is in process on any node, then reads every node's API and fails
the run unless, for each node and zone, ``requests`` and each response class grew by exactly what
the users counted, ``responses.total`` is the sum of the classes, and the peers of ``backend``
served exactly the proxied requests (no retries are configured).
"""

from __future__ import annotations

import random
import threading
from collections import Counter

from checks import Cluster, run_checker, wait_until
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser

PORT = 8080
ZONES = {"app": "app.example.com", "www": "www.example.com"}
UPSTREAM = "backend"
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

state: dict = {}
_lock = threading.Lock()
sent: Counter = Counter()  # (node, zone) -> requests answered
classes: Counter = Counter()  # (node, zone, class) -> responses
proxied: Counter = Counter()  # node -> requests that went to the upstream
started: Counter = Counter()  # node -> requests begun (answered or not)
failed: list[str] = []


def _zones(cluster: Cluster, node: str) -> dict:
    return cluster.api(node, "/http/server_zones")


def _peer_requests(cluster: Cluster, node: str) -> int:
    up = cluster.api(node, f"/http/upstreams/{UPSTREAM}")
    return sum(p["requests"] for p in up["peers"])


@events.test_start.add_listener
def _start(environment, **_kw):
    environment.stop_timeout = environment.stop_timeout or 10
    cluster = Cluster(environment.host)
    state["cluster"] = cluster
    state["urls"] = {n: cluster.data_url(n, PORT) for n in cluster.names}
    state["before"] = {n: _zones(cluster, n) for n in cluster.names}
    state["peers_before"] = {n: _peer_requests(cluster, n) for n in cluster.names}


class DataPlaneUser(FastHttpUser):
    host = "http://127.0.0.1"  # every request names its node's own URL

    @task
    def get(self) -> None:
        urls = state["urls"]
        node = random.choice(list(urls))
        zone = random.choice(list(ZONES))
        ping = random.random() < 0.1
        path = "/ping" if ping else f"/item/{random.randrange(1000)}"
        with _lock:
            started[node] += 1
        with self.client.get(urls[node] + path, headers={"Host": ZONES[zone]}, name=f"{zone}{'/ping' if ping else ''}",
                             catch_response=True) as resp:
            code = resp.status_code or 0
            if code == 0:
                failed.append(f"{node} {zone} {path}: {resp.error}")
                resp.failure(f"no response: {resp.error}")
                return
            resp.success()  # 404 and 503 are part of the backends' status mix
        with _lock:
            sent[(node, zone)] += 1
            classes[(node, zone, f"{code // 100}xx")] += 1
            if not (ping and zone == "app"):  # /ping is a return location only in the app server
                proxied[node] += 1


def check(v) -> None:
    cluster: Cluster = state["cluster"]
    v.equal(failed, [], "requests without a response")
    answered = sum(sent.values())
    v.equal(answered, sum(started.values()), "requests answered vs begun (in flight at the stop?)")

    def quiet():
        return all(z["processing"] == 0 for n in cluster.names for z in _zones(cluster, n).values())

    v.check(bool(wait_until(quiet, timeout=10)), "requests still processing 10 s after the stop")
    for node in cluster.names:
        before, after = state["before"][node], _zones(cluster, node)
        for zone in ZONES:
            b, a = before[zone], after[zone]
            v.equal(a["requests"] - b["requests"], sent[(node, zone)], f"{node} {zone} requests")
            for cls in CLASSES:
                got = a["responses"][cls] - b["responses"][cls]
                v.equal(got, classes[(node, zone, cls)], f"{node} {zone} responses.{cls}")
            total = sum(a["responses"][c] for c in CLASSES)
            v.equal(a["responses"]["total"], total, f"{node} {zone} responses.total vs sum of classes")
        peers = _peer_requests(cluster, node) - state["peers_before"][node]
        v.equal(peers, proxied[node], f"{node} upstream {UPSTREAM}: peers' requests vs proxied requests")
    v.facts = {"requests": answered, "per_node": {n: sum(c for (m, _z), c in sent.items() if m == n)
                                                  for n in cluster.names}}
    v.note(f"{answered} requests checked on {len(cluster.names)} nodes")


@events.quitting.add_listener
def _check(environment, **_kw):
    if "cluster" not in state:
        return
    run_checker(environment, "traffic_counters", check)

