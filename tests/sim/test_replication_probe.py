"""The incremental replication probe against a full comparison, and the causes of lost updates."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simpy.events import Timeout

from sim.checks.replication import ReplicationProbe, contents_of, divergent_keys, report_for_cluster
from sim.cluster import cluster, scenario
from sim.workload.keyval_writers import KeyvalClient

NODES = ("node1", "node2", "node3")


def conf(zone_args: str) -> str:
    return f"""
  stream {{
    resolver 127.0.0.53;
    keyval_zone zone=kv:{zone_args} sync;
    server {{
      listen 9000;
      zone_sync;
      zone_sync_server cluster.local:9000 resolve;
      zone_sync_connect_timeout 1s;
    }}
  }}
"""


def scenario_for(zone_args: str, extra: str = ""):
    body = "\n".join("  " + line for line in conf(zone_args).splitlines())
    return scenario.loads(f"""
seed: 3
duration: 60s
nodes: 3
network: {{node_latency_ms: 1.0}}
hosts: {{cluster.local: [node1, node2, node3]}}
{extra}
nginx_conf_inline: |
{body}
""")


def checked_probe(cl, zone: str, **kwargs) -> tuple[ReplicationProbe, list[tuple[float, int, int]]]:
    """A probe whose every sample is also checked by comparing every node's whole zone, the old
    way; the list collects ``(time, probe's count, full comparison's count)`` where they differ."""
    mismatches: list[tuple[float, int, int]] = []

    def compare(probe, n):
        history = probe.history
        ignore = history.deleted_keys.get(probe.zone, set()) if history is not None else set()
        full = len(divergent_keys(contents_of(probe.cluster, probe.zone, probe.side), ignore))
        if full != n:
            mismatches.append((probe.env.now, n, full))

    probe = ReplicationProbe(cl, zone, start=False, **kwargs)
    probe.sample_listeners.append(compare)
    probe.start()
    return probe, mismatches


SHORT = scenario_for("1m timeout=4s state=kv.json")

OPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NODES), st.sampled_from("abcde")),
    st.tuples(st.just("delete"), st.sampled_from(NODES), st.sampled_from("abcde")),
    st.tuples(st.just("partition"), st.sets(st.sampled_from(NODES), min_size=1, max_size=2)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("crash"), st.sampled_from(NODES)),
    st.tuples(st.just("restart"), st.sampled_from(NODES)),
    st.tuples(st.just("skew"), st.sampled_from(NODES), st.integers(-3000, 3000)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 1500), OPS), max_size=40))
def test_the_incremental_probe_counts_what_a_full_comparison_counts_at_every_sample(schedule):
    with tempfile.TemporaryDirectory() as tmp:
        cl = cluster.Cluster(SHORT, start_workloads=False, sample=False, state_dir=tmp)
        kv = KeyvalClient(cl, "kv")
        probe, mismatches = checked_probe(cl, "kv", interval_ms=50.0, history=kv.history)
        seq = iter(range(10**6))

        def apply(ev):
            op = ev._value
            kind = op[0]
            if kind == "write":
                kv.set(op[1], op[2], f"v{next(seq)}")
            elif kind == "delete":
                z = kv.zone_on(op[1])
                if z is not None and z.record(op[2]) is not None:
                    kv.delete(op[1], op[2])
            elif kind == "partition":
                cl.network.partition(sorted(op[1]), [n for n in NODES if n not in op[1]])
            elif kind == "heal":
                cl.network.heal()
            elif kind == "crash" and cl.nodes[op[1]].up:
                cl.nodes[op[1]].crash()
            elif kind == "restart":
                cl.nodes[op[1]].restart()
            elif kind == "skew":
                cl.nodes[op[1]].clock.offset_ms = float(op[2])

        t = 200.0
        for gap, op in schedule:
            t += gap
            Timeout(cl.env, t, op).callbacks.append(apply)
        cl.run(t + 8000)
        assert mismatches == []
        assert probe.corrections == 0


def test_a_sample_reads_no_zone_when_nothing_changed():
    cl = cluster.Cluster(scenario_for("1m timeout=1h"), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe = ReplicationProbe(cl, "kv", interval_ms=100.0, history=kv.history)
    cl.run(1500)
    for i in range(200):
        kv.set("node1", f"k{i}", "v")
    assert probe.sample() == 200  # written on node1 only, so far
    cl.run(4000)
    assert probe.sample() == 0 and len(set(probe.digests().values())) == 1
    # only the first sample (and none since) built the table from the zones
    assert probe.rebuilds == 1


def test_a_restart_rebuilds_the_table_once_and_the_counts_stay_exact():
    cl = cluster.Cluster(scenario_for("1m timeout=1h"), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe, mismatches = checked_probe(cl, "kv", interval_ms=100.0, history=kv.history)
    cl.run(1500)
    for i in range(20):
        kv.set("node2", f"k{i}", "v")
    cl.run(3000)
    cl.nodes["node3"].crash()
    cl.run(3500)
    kv.set("node1", "k0", "new")
    cl.nodes["node3"].restart()  # no state file: it comes back empty, then snapshots refill it
    cl.run(8000)
    assert mismatches == [] and probe.rebuilds == 3
    assert report_for_cluster(cl, kv.history, "kv", probe=probe).ok


# ---------------------------------------------------------------------------------------------
# Causes


def test_a_full_zone_explains_the_records_a_receiver_dropped_with_counts_per_node():
    # a zone of 8 pages on node3 would hold ~100 pairs: node1 writes 400
    sc = scenario_for("32k timeout=1h")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe = ReplicationProbe(cl, "kv", interval_ms=100.0, history=kv.history)
    cl.run(1500)
    for i in range(400):
        kv.set("node1", f"key-{i:04d}", "x" * 20)
    cl.run(5000)
    report = report_for_cluster(cl, kv.history, "kv", probe=probe)
    refused = kv.failures.get("KeyvalZoneFull", 0)
    assert refused > 0 and report.writes == 400 - refused
    assert report.lost_updates == [] or {x.cause for x in report.lost_updates} == {"zone_full"}
    assert report.zone_full["node1"]["writes_refused"] == refused
    assert report.explained
    summary = report.summary()
    assert summary["unexplained"] == 0


def test_a_lagging_clock_that_overwrites_a_newer_remote_pair_is_clock_skew():
    cl = cluster.Cluster(scenario_for("1m timeout=1h"), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe = ReplicationProbe(cl, "kv", interval_ms=100.0, history=kv.history)
    cl.nodes["node3"].clock.offset_ms = -5000.0
    cl.run(1500)
    kv.set("node1", "k", "from-node1")
    cl.run(3000)  # node3 has it now
    kv.set("node3", "k", "from-node3")  # later, but its timestamp is 5 s older
    cl.run(6000)
    report = report_for_cluster(cl, kv.history, "kv", probe=probe)
    assert not report.converged and report.divergent_keys == ["k"]
    assert [(x.node, x.found, x.cause) for x in report.lost_updates] == [("node3", "from-node3", "clock_skew")]
    assert report.divergent_causes == {"k": "clock_skew"} and report.explained
    assert report.summary()["causes"] == {"clock_skew": 1}


def test_an_isolated_origin_that_restarts_without_state_lost_its_write():
    faults = "faults: [{at: 1s, action: partition, nodes: [node1], other: [node2, node3], duration: 10s}]"
    cl = cluster.Cluster(scenario_for("1m timeout=1h", faults), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe = ReplicationProbe(cl, "kv", interval_ms=100.0, history=kv.history)
    cl.run(2000)
    kv.set("node1", "k", "only-on-node1")
    cl.run(3000)
    cl.nodes["node1"].crash()
    cl.nodes["node1"].restart()
    cl.run(20_000)
    report = report_for_cluster(cl, kv.history, "kv", probe=probe)
    assert report.converged  # every node agrees: nobody has it
    assert {x.cause for x in report.lost_updates} == {"origin_lost"} and len(report.lost_updates) == 3
    assert report.explained


def test_a_node_still_cut_off_at_the_end_is_down_or_partitioned():
    cl = cluster.Cluster(scenario_for("1m timeout=1h"), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    cl.run(1500)
    cl.network.partition(["node3"], ["node1", "node2"])
    kv.set("node1", "k", "v")
    cl.run(4000)
    report = report_for_cluster(cl, kv.history, "kv")
    assert [(x.node, x.cause) for x in report.lost_updates] == [("node3", "down_or_partitioned")]
    assert report.explained and not report.converged


def test_a_receiver_that_ignores_timestamps_is_unexplained():
    faults = "faults: [{at: 10s, action: partition, nodes: [node1], other: [node2, node3], duration: 20s}]"
    cl = cluster.Cluster(scenario_for("1m timeout=1h", faults), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    broken = cl.nodes["node2"].stream_keyvals["kv"]
    cl.run(12_000)
    kv.set("node1", "k", "old")
    old = cl.nodes["node1"].stream_keyvals["kv"].record("k")
    cl.run(15_000)
    kv.set("node2", "k", "new")
    cl.run(35_000)
    # what a receiver that ignored timestamps would have done with node1's snapshot at the heal
    broken._store("k", old.value, old.timestamp, old.origin, None)
    cl.run(40_000)
    report = report_for_cluster(cl, kv.history, "kv")
    assert [x.cause for x in report.lost_updates] == ["unexplained"]
    assert not report.explained and report.summary()["unexplained"] == 2  # the lost update and its key
