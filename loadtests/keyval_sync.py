"""Load test: keyval writes through the API on random nodes, replicated by zone_sync.

Run against ``clustersim serve scenarios/loadtest-keyval-sync.yaml`` with ``--host`` the control
endpoint. Each user owns a handful of keys of the stream keyval zone ``sessions`` and writes them
(PATCH, or POST when the node does not have the key yet) on random nodes, remembering the last
value it wrote. When the run stops the checker waits for ``records_pending`` to reach 0 on every
node and for the nodes to hold the same pairs, then asserts every node holds exactly the last
value written to each key and ``nodes_online`` equals the number of nodes; it reports the time
the cluster took to converge after the stop.
"""

from __future__ import annotations

import itertools
import time
import uuid

from checks import (
    Cluster,
    KeyvalLedger,
    converged_keyvals,
    keyval_contents,
    records_pending,
    run_checker,
    wait_until,
    write_random_key,
    zone_sync_status,
)
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

ZONE = "sessions"
KEYS_PER_USER = 5
CONVERGE_TIMEOUT_S = 15.0

state: dict = {"run": uuid.uuid4().hex[:6]}
ledger = KeyvalLedger(ZONE)
_users = itertools.count()


@events.test_start.add_listener
def _start(environment, **_kw):
    environment.stop_timeout = environment.stop_timeout or 10
    state["cluster"] = Cluster(environment.host)


class KeyvalWriter(FastHttpUser):
    host = "http://127.0.0.1"
    # apart by more than a pacer step, so no two writes of one key share a sim-time instant
    wait_time = between(0.005, 0.02)

    def on_start(self) -> None:
        me = next(_users)
        self.keys = [f"{state['run']}-u{me}-k{i}" for i in range(KEYS_PER_USER)]
        self.seq = 0

    @task
    def write(self) -> None:
        self.seq += 1
        write_random_key(self.client, state["cluster"], ledger, self.keys, self.seq)


def check(v) -> None:
    cluster: Cluster = state["cluster"]
    prefix = state["run"] + "-"
    v.equal(ledger.failures, [], "failed keyval writes")
    v.check(ledger.writes > 0, "no keyval write succeeded")
    t0 = time.monotonic()
    got = wait_until(lambda: converged_keyvals(cluster, ledger, prefix), timeout=CONVERGE_TIMEOUT_S, interval=0.05)
    took = time.monotonic() - t0
    if not v.check(got is not None, f"nodes did not converge within {CONVERGE_TIMEOUT_S:g} s"):
        for n in cluster.names:
            s = zone_sync_status(cluster, n)
            v.note(f"{n}: records_pending {records_pending(s)}, {len(keyval_contents(cluster, n, ledger.path(), prefix))} keys")
        return
    contents, statuses = got
    v.equal(contents, ledger.last, "replicated keyval content vs the last value written to each key")
    for n, s in statuses.items():
        v.equal(s["status"]["nodes_online"], len(cluster.names), f"{n} nodes_online")
    v.facts = {"writes": ledger.writes, "keys": len(ledger.last), "convergence_s": round(took, 3)}
    v.note(f"{ledger.writes} writes to {len(ledger.last)} keys; converged {took:.3f} s after the stop")


@events.quitting.add_listener
def _check(environment, **_kw):
    if "cluster" in state:
        run_checker(environment, "keyval_sync", check)
