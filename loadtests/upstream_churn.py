"""Load test: upstream servers changed through the API while traffic flows.

Run against ``clustersim serve scenarios/loadtest-upstream-churn.yaml`` with ``--host`` the
control endpoint. FastHttpUsers send requests through every node to the upstream ``backend``;
each response names the peer that served it (``X-Upstream-Addr``). One operator user changes the
upstream on a random node every few hundred milliseconds: adds a server (a fresh address each
time), changes a weight, marks a server ``down`` or ``drain``, or removes one, always keeping at
least one plain server, and records each change when the API has answered.

The checker asserts that no request sent after a server was marked down, drain or removed on a
node was served by that server there; that such servers' ``requests`` counters (for those still
listed) did not grow after the change; and that every node's server list is exactly the result
of the operations performed (ids, addresses, weights, down and drain flags).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from checks import Cluster, run_checker
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

PORT = 8080
HOST = "app.example.com"
UPSTREAM = "backend"
FIELDS = ("id", "server", "weight", "down", "drain")

state: dict = {}
_lock = threading.Lock()
expected: dict[str, dict[int, dict]] = {}  # node -> id -> server fields
banned: dict[str, dict[str, tuple[float, str]]] = {}  # node -> address -> (wall time, what)
snapshots: list[tuple[str, int, str, int]] = []  # (node, id, address, peer requests right after the change)
violations: list[str] = []
served: Counter = Counter()
op_log: list[str] = []
op_failures: list[str] = []
_addresses = iter(f"10.0.{9 + i // 250}.{1 + i % 250}:80" for i in range(100_000))


def _fields(s: dict) -> dict:
    return {"id": s["id"], "server": s["server"], "weight": s.get("weight", 1), "down": bool(s.get("down", False)),
            "drain": bool(s.get("drain", False))}


def _servers(cluster: Cluster, node: str) -> dict[int, dict]:
    return {s["id"]: _fields(s) for s in cluster.api(node, f"/http/upstreams/{UPSTREAM}/servers")}


def _peer_requests(cluster: Cluster, node: str) -> dict[int, int]:
    return {p["id"]: p["requests"] for p in cluster.api(node, f"/http/upstreams/{UPSTREAM}")["peers"]}


@events.test_start.add_listener
def _start(environment, **_kw):
    environment.stop_timeout = environment.stop_timeout or 10
    cluster = Cluster(environment.host)
    state["cluster"] = cluster
    state["urls"] = {n: cluster.data_url(n, PORT) for n in cluster.names}
    for n in cluster.names:
        expected[n] = _servers(cluster, n)
        banned[n] = {}


class Traffic(FastHttpUser):
    host = "http://127.0.0.1"
    weight = 8

    @task
    def get(self) -> None:
        node = random.choice(list(state["urls"]))
        sent_at = time.monotonic()
        with self.client.get(state["urls"][node] + f"/item/{random.randrange(100)}", headers={"Host": HOST},
                             name="data plane", catch_response=True) as resp:
            if not resp.status_code:
                resp.failure(f"no response: {resp.error}")
                violations.append(f"{node}: request without a response: {resp.error}")
                return
            addr = resp.headers.get("X-Upstream-Addr")
            resp.success()
        with _lock:
            served[(node, addr)] += 1
            ban = banned[node].get(addr)
            if ban is not None and ban[0] < sent_at:
                violations.append(f"{node}: request sent {sent_at - ban[0]:.3f} s after {addr} was {ban[1]} "
                                  f"was served by it")


class Operator(FastHttpUser):
    host = "http://127.0.0.1"
    fixed_count = 1
    weight = 1
    wait_time = between(0.15, 0.3)

    def api(self, method: str, node: str, path: str, body=None):
        url = state["cluster"].api_base(node) + f"/http/upstreams/{UPSTREAM}/servers{path}"
        with self.client.request(method, url, json=body, name=f"{method} servers", catch_response=True) as r:
            ok = r.status_code in (200, 201, 204)
            if ok:
                r.success()
            else:
                r.failure(f"{r.status_code}")
                op_failures.append(f"{method} {url} {body}: {r.status_code} {r.text}")
            return ok, (r.json() if ok and r.text else None)

    def ban(self, node: str, sid: int, what: str) -> None:
        addr = expected[node][sid]["server"]
        with _lock:
            banned[node].setdefault(addr, (time.monotonic(), what))
        if what != "removed":
            snapshots.append((node, sid, addr, _peer_requests(state["cluster"], node)[sid]))

    @task
    def change(self) -> None:
        node = random.choice(list(expected))
        servers = expected[node]
        plain = [i for i, s in servers.items() if not s["down"] and not s["drain"]]
        op = random.choice(["add", "weight", "down", "drain", "remove"]) if len(plain) > 1 else "add"
        if op == "add":
            ok, body = self.api("POST", node, "", {"server": next(_addresses)})
            if ok:
                servers[body["id"]] = _fields(body)
        elif op == "weight":
            sid = random.choice(list(servers))
            w = random.randint(1, 5)
            ok, _ = self.api("PATCH", node, f"/{sid}", {"weight": w})
            if ok:
                servers[sid]["weight"] = w
        elif op in ("down", "drain"):
            sid = random.choice(plain)
            ok, _ = self.api("PATCH", node, f"/{sid}", {op: True})
            if ok:
                servers[sid][op] = True
                self.ban(node, sid, op)
        else:
            sid = random.choice(list(servers))
            if sid in plain and len(plain) <= 1:
                return
            ok, _ = self.api("DELETE", node, f"/{sid}")
            if ok:
                self.ban(node, sid, "removed")
                del servers[sid]
        op_log.append(f"{node} {op}")


def check(v) -> None:
    cluster: Cluster = state["cluster"]
    v.equal(op_failures, [], "API operations refused")
    v.equal(violations, [], "requests served by a server after it was marked down, drain or removed")
    for node, sid, addr, before in snapshots:
        now = _peer_requests(cluster, node)
        if sid in now:
            v.equal(now[sid] - before, 0, f"{node} server {sid} ({addr}): new requests after down/drain")
    for node in cluster.names:
        v.equal(_servers(cluster, node), expected[node], f"{node} servers of {UPSTREAM}")
    v.check(len(op_log) > 0, "the operator made no change")
    kinds = Counter(op.split()[1] for op in op_log)
    v.facts = {"operations": dict(kinds), "requests": sum(served.values())}
    v.note(f"{len(op_log)} operations {dict(kinds)} under {sum(served.values())} requests")


@events.quitting.add_listener
def _check(environment, **_kw):
    if "cluster" in state:
        run_checker(environment, "upstream_churn", check)
