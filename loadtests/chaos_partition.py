"""Load test: zone_sync through a live partition and its healing.

Run against ``clustersim serve scenarios/loadtest-chaos-partition.yaml`` with ``--host`` the
control endpoint. Users write keyval pairs on random nodes the whole run (as in
``keyval_sync.py``). A chaos greenlet partitions the zone_sync mesh through the control endpoint
(the last node against the others) once a quarter of the run has passed, and heals it after
another half. The checker asserts that during the partition the divergence was visible in
``/stream/zone_sync`` (the cut-off node saw fewer ``nodes_online`` and kept records pending while
writes went on) and that after the heal every node converged to the last-write-wins content with
the full mesh online.
"""

from __future__ import annotations

import itertools
import time
import uuid

import gevent
from checks import (
    Cluster,
    KeyvalLedger,
    converged_keyvals,
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

state: dict = {"run": uuid.uuid4().hex[:6], "observed": [], "chaos": []}
ledger = KeyvalLedger(ZONE)
_users = itertools.count()


def _run_time(environment) -> float:
    t = getattr(environment.parsed_options, "run_time", None) if environment.parsed_options else None
    return float(t) if t else 12.0


def chaos(environment) -> None:
    """Partition at 1/4 of the run, watch /stream/zone_sync, heal at 3/4."""
    cluster: Cluster = state["cluster"]
    run = _run_time(environment)
    isolated, rest = cluster.names[-1], cluster.names[:-1]
    gevent.sleep(run / 4)
    state["chaos"].append(cluster.fault(action="partition", nodes=[isolated], other=rest))
    heal_at = time.monotonic() + run / 2
    while time.monotonic() < heal_at:
        s = zone_sync_status(cluster, isolated)
        state["observed"].append({"nodes_online": s["status"]["nodes_online"], "records_pending": records_pending(s),
                                  "others_online": [zone_sync_status(cluster, n)["status"]["nodes_online"]
                                                    for n in rest]})
        gevent.sleep(0.1)
    state["chaos"].append(cluster.heal(action="partition", nodes=[isolated], other=rest))


@events.test_start.add_listener
def _start(environment, **_kw):
    environment.stop_timeout = environment.stop_timeout or 10
    state["cluster"] = Cluster(environment.host)
    state["greenlet"] = gevent.spawn(chaos, environment)


class KeyvalWriter(FastHttpUser):
    host = "http://127.0.0.1"
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
    g = state["greenlet"]
    g.join(timeout=30)
    v.check(g.successful(), f"chaos greenlet failed: {g.exception!r}")
    v.equal([e["action"] for e in state["chaos"]], ["partition", "partition:healed"], "faults applied")
    v.equal(ledger.failures, [], "failed keyval writes")
    n = len(cluster.names)
    obs = state["observed"]
    cut_off = [o for o in obs if o["nodes_online"] < n]
    v.check(bool(cut_off), f"the isolated node never showed fewer than {n} nodes_online during the partition")
    v.check(any(o["records_pending"] > 0 for o in cut_off),
            "the isolated node never showed records_pending > 0 while cut off")
    v.check(any(max(o["others_online"]) < n for o in obs), "the other nodes never showed the partition")
    t0 = time.monotonic()
    got = wait_until(lambda: converged_keyvals(cluster, ledger, state["run"] + "-", full_mesh=True),
                     timeout=CONVERGE_TIMEOUT_S, interval=0.05)
    took = time.monotonic() - t0
    if v.check(got is not None, f"nodes did not converge within {CONVERGE_TIMEOUT_S:g} s of the stop"):
        v.equal(got[0], ledger.last, "keyval content after the heal vs the last value written to each key")
    v.facts = {"writes": ledger.writes, "observations": len(obs), "cut_off_observations": len(cut_off),
               "max_pending": max((o["records_pending"] for o in obs), default=0), "convergence_s": round(took, 3)}
    v.note(f"{ledger.writes} writes; partition seen in {len(cut_off)}/{len(obs)} samples "
           f"(records_pending up to {v.facts['max_pending']}); converged {took:.3f} s after the stop")


@events.quitting.add_listener
def _check(environment, **_kw):
    if "cluster" in state:
        run_checker(environment, "chaos_partition", check)
