"""The replication checker, the keyval writers, and zone_sync's convergence under random faults."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simpy.events import Timeout

from sim.checks.replication import (
    LostUpdate,
    ReplicationProbe,
    Resurrected,
    Write,
    WriteHistory,
    check,
    divergent_keys,
    report_for_cluster,
    winners,
)
from sim.cluster import cluster, scenario
from sim.cluster.cluster import run_replication as run
from sim.workload.keyval_writers import KeyvalClient, KeyvalWriterSpec, start_keyval_writers

ROOT = Path(__file__).resolve().parents[2]
NODES = ("node1", "node2", "node3")


def w(at, node, key, value, ts=None, op="post"):
    if value is None:
        return Write(at, node, "kv", key, None, None, "delete")
    return Write(at, node, "kv", key, value, 1000.0 + at if ts is None else ts, op)


def history(*writes):
    h = WriteHistory()
    for x in writes:
        h.record(x)
    return h


# ---------------------------------------------------------------------------------------------
# The checker on hand-made histories


def test_the_winner_has_the_greatest_timestamp_and_then_the_greatest_origin_name():
    ws = [w(1, "node1", "a", "x", ts=50), w(2, "node2", "a", "y", ts=40), w(3, "node1", "b", "p", ts=7),
          w(3, "node3", "b", "q", ts=7)]
    assert {k: v.value for k, v in winners(ws).items()} == {"a": "x", "b": "q"}


def test_a_skewed_local_write_is_clock_skew_even_when_an_older_record_replaced_it_later():
    # node3 writes the winner (ts 335); node2, its clock behind, writes over it locally later in
    # sim time with ts 312 (the winner is pushed out there); node4's even earlier write (ts 322)
    # arrives after that and beats node2's own, so node2 ends with node4's value: neither its
    # own write nor the winner. The history proves the skew: node2 wrote after the winner with a
    # smaller timestamp.
    h = history(w(320, "node4", "k", "from4", ts=322), w(335, "node3", "k", "from3", ts=335),
                w(341, "node2", "k", "from2", ts=312))
    others = {"k": "from3"}
    report = check(h, {"node2": {"k": "from4"}, "node3": dict(others), "node4": dict(others)}, zone="kv")
    assert [(x.node, x.found, x.cause) for x in report.lost_updates] == [("node2", "from4", "clock_skew")]
    # without node2's skewed write the same final state has no proven cause
    h = history(w(320, "node4", "k", "from4", ts=322), w(335, "node3", "k", "from3", ts=335))
    report = check(h, {"node2": {"k": "from4"}, "node3": dict(others), "node4": dict(others)}, zone="kv")
    assert [x.cause for x in report.lost_updates] == ["unexplained"]


def test_equal_contents_holding_the_winners_pass():
    h = history(w(1, "node1", "a", "1"), w(2, "node2", "a", "2"), w(3, "node3", "b", "3"))
    same = {"a": "2", "b": "3"}
    report = check(h, {"node1": same, "node2": dict(same), "node3": dict(same)}, zone="kv")
    assert report.ok and report.judged_keys == 2 and report.writes == 3 and report.keys == 2


def test_a_node_holding_a_losing_value_or_nothing_is_a_lost_update():
    h = history(w(1, "node1", "a", "1"), w(2, "node2", "a", "2"), w(3, "node3", "b", "3"))
    report = check(h, {"node1": {"a": "1", "b": "3"}, "node2": {"a": "2", "b": "3"}, "node3": {"a": "2"}})
    assert not report.ok and not report.converged
    assert report.divergent_keys == ["a", "b"]
    assert report.lost_updates == [
        LostUpdate("a", "node1", "2", "1", "node2"),
        LostUpdate("b", "node3", "3", None, "node3"),
    ]


def test_a_later_write_that_lost_to_a_faster_clock_is_listed_as_reordered():
    h = history(w(1, "node3", "a", "skewed", ts=9000), w(2, "node1", "a", "straight", ts=1002))
    report = check(h, {"node1": {"a": "skewed"}, "node3": {"a": "skewed"}})
    assert report.ok
    found = [(r.key, r.latest.value, r.winner.value) for r in report.reordered]
    assert found == [("a", "straight", "skewed")]


def test_a_deleted_key_back_on_its_node_is_resurrected_and_left_out_of_convergence():
    h = history(w(1, "node1", "a", "1"), w(5, "node2", "a", None), w(6, "node1", "b", "2"))
    contents = {"node1": {"a": "1", "b": "2"}, "node2": {"a": "1", "b": "2"}}
    report = check(h, contents)
    assert report.converged and report.lost_updates == []
    assert report.resurrected == [Resurrected("a", "node2", 5, "1")] and not report.ok
    # the same key gone from node2 only: still converged (deletes are local), nothing resurrected
    contents["node2"] = {"b": "2"}
    report = check(h, contents)
    assert report.ok and report.divergent_keys == []


def test_a_write_after_the_delete_is_not_a_resurrection():
    h = history(w(1, "node1", "a", "1"), w(5, "node2", "a", None), w(7, "node3", "a", "3"))
    report = check(h, {"node1": {"a": "3"}, "node2": {"a": "3"}, "node3": {"a": "3"}})
    assert report.resurrected == [] and report.ok


def test_with_a_timeout_expired_keys_must_be_gone_and_keys_expiring_at_the_end_are_not_judged():
    h = history(w(1000, "node1", "old", "1"), w(9500, "node1", "edge", "2"), w(20_000, "node1", "new", "3"))
    contents = {"node1": {"old": "1", "edge": "2", "new": "3"}, "node2": {"new": "3"}}
    report = check(h, contents, end_ms=20_000, timeout_ms=10_000, expiry_margin_ms=1000)
    assert report.judged_keys == 2  # "edge" expires within a second of the end
    assert report.lost_updates == [LostUpdate("old", "node1", None, "1", "node1")]


def test_divergent_keys_ignores_the_keys_it_is_told_to():
    contents = {"n1": {"a": "1", "b": "2"}, "n2": {"a": "1", "b": "3"}, "n3": {"a": "1"}}
    assert divergent_keys(contents) == ["b"]
    assert divergent_keys(contents, ignore={"b"}) == []
    assert divergent_keys({"n1": {"a": "1"}, "n2": {"a": "1"}}) == []


# ---------------------------------------------------------------------------------------------
# Against a running cluster

ZS_CONF = """
  stream {
    resolver 127.0.0.53;
    keyval_zone zone=kv:1m timeout=1h state=kv.json sync;
    server {
      listen 9000;
      zone_sync;
      zone_sync_server cluster.local:9000 resolve;
      zone_sync_connect_timeout 1s;
    }
  }
"""


def scenario_text(extra=""):
    return f"""
seed: 9
duration: 60s
nodes: 3
network: {{node_latency_ms: 1.0}}
hosts: {{cluster.local: [node1, node2, node3]}}
{extra}
nginx_conf_inline: |
{ZS_CONF}
"""


SCENARIO = scenario.loads(scenario_text())


def test_the_checker_catches_a_receiver_that_ignores_timestamps():
    faults = "faults: [{at: 10s, action: partition, nodes: [node1], other: [node2, node3], duration: 20s}]"
    cl = cluster.Cluster(scenario.loads(scenario_text(faults)), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    broken = cl.nodes["node2"].stream_keyvals["kv"]
    cl.run(12_000)
    kv.set("node1", "k", "old")  # isolated node1, earlier
    old = cl.nodes["node1"].stream_keyvals["kv"].record("k")
    cl.run(15_000)
    kv.set("node2", "k", "new")  # the other side, later: the winner
    cl.run(35_000)
    # a receiver that ignored timestamps would have let node1's older record, arriving with
    # the heal's snapshot, overwrite the newer local one: do to node2 what it would have done
    broken._store("k", old.value, old.timestamp, old.origin, old.expire_at)
    cl.run(40_000)
    report = report_for_cluster(cl, kv.history, "kv")
    assert not report.ok and not report.converged
    assert report.lost_updates == [LostUpdate("k", "node2", "new", "old", "node2")]
    # the same run with the real receiver passes
    cl = cluster.Cluster(scenario.loads(scenario_text(faults)), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    cl.run(12_000)
    kv.set("node1", "k", "old")
    cl.run(15_000)
    kv.set("node2", "k", "new")
    cl.run(40_000)
    assert report_for_cluster(cl, kv.history, "kv").ok


def test_the_probe_measures_the_divergence_and_the_time_to_converge_after_the_heal():
    faults = "faults: [{at: 10s, action: partition, nodes: [node3], other: [node1, node2], duration: 20s}]"
    cl = cluster.Cluster(scenario.loads(scenario_text(faults)), start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe = ReplicationProbe(cl, "kv", interval_ms=10.0, history=kv.history)
    cl.run(15_000)
    for i in range(3):
        kv.set("node3", f"k{i}", "v")
    kv.set("node1", "k0", "w")
    cl.run(40_000)
    report = report_for_cluster(cl, kv.history, "kv", probe=probe)
    assert report.ok and report.reference_ms == 30_000  # the heal, after the last write
    # node3 reconnects as the heal happens (a retry at 30 s) and snapshots arrive 3 ms later
    assert report.converged_at_ms == 30_010 and report.time_to_converge_ms == 10
    assert report.max_divergent_keys == 3 and report.first_divergence_ms == 15_000
    assert report.last_divergence_ms == 30_000
    assert probe.series[:2] == [(0.0, 0, 3), (15_000.0, 3, 3)]
    summary = report.summary()
    assert (summary["time_to_converge_ms"], summary["lost_updates"], summary["ok"]) == (10, 0, True)


def test_a_crashed_node_keeps_the_cluster_from_counting_as_converged():
    cl = cluster.Cluster(SCENARIO, start_workloads=False, sample=False)
    kv = KeyvalClient(cl, "kv")
    probe = ReplicationProbe(cl, "kv", interval_ms=100.0)
    cl.run(1500)
    kv.set("node1", "a", "1")
    cl.run(3000)
    cl.nodes["node3"].crash()
    cl.run(4000)
    assert kv.set("node3", "b", "2") is None and kv.failures == {"unavailable": 1}
    report = report_for_cluster(cl, kv.history, "kv", probe=probe)
    assert not report.converged and probe.converged_since is None and probe.series[-1] == (3000.0, 0, 2)


# ---------------------------------------------------------------------------------------------
# The writers


def test_keyval_writers_write_at_their_rate_and_record_each_write():
    cl = cluster.Cluster(SCENARIO, start_workloads=False, sample=False)
    spec = KeyvalWriterSpec(name="api", zone="kv", nodes=("node1", "node2"), rate=4, arrivals="constant",
                            keys=3, stop_ms=1000.0, value_bytes=16)
    writers = start_keyval_writers(cl, [spec])
    cl.run(5000)
    h = writers.history
    assert len(h) == 6 and [x.at_ms for x in h][:2] == [250.0, 250.0]
    assert {x.node for x in h} == {"node1", "node2"} and all(len(x.value) == 16 for x in h)
    assert len({x.value for x in h}) == 6 and h.writes[0].value.startswith("node1:api:1")
    assert all(x.timestamp == cl.epoch_ms + x.at_ms for x in h)
    assert report_for_cluster(cl, h, "kv").ok


def test_a_writer_with_a_delete_share_deletes_keys_it_finds():
    cl = cluster.Cluster(SCENARIO, start_workloads=False, sample=False)
    spec = KeyvalWriterSpec(name="api", zone="kv", nodes=("node1",), rate=10, keys=1, delete_share=1.0,
                            stop_ms=2000.0)
    writers = start_keyval_writers(cl, [spec])
    cl.run(3000)
    ops = [x.op for x in writers.history]
    assert ops[:4] == ["post", "delete", "post", "delete"]
    assert writers.history.deleted_keys == {"kv": {"key0"}}


def test_a_cycling_writer_takes_every_key_in_turn_on_each_node():
    cl = cluster.Cluster(SCENARIO, start_workloads=False, sample=False)
    spec = KeyvalWriterSpec(name="settle", zone="kv", nodes=("node1", "node2"), rate=10, arrivals="constant",
                            keys=3, order="cycle", start_ms=1000.0, stop_ms=1800.0)
    writers = start_keyval_writers(cl, [spec])
    cl.run(3000)
    by_node = {n: [x.key for x in writers.history if x.node == n] for n in ("node1", "node2")}
    assert by_node["node1"] == by_node["node2"] == ["key0", "key1", "key2", "key0", "key1", "key2", "key0"]
    sc = scenario.loads(scenario_text("keyval_writers: [{zone: kv, order: cycle}]"))
    assert sc.keyval_writers[0].order == "cycle"
    with pytest.raises(scenario.ScenarioError, match="order"):
        scenario.loads(scenario_text("keyval_writers: [{zone: kv, order: sorted}]"), filename="s.yaml")


def test_keyval_writers_come_from_the_scenario_and_name_a_zone_every_target_node_has():
    sc = scenario.loads(scenario_text("keyval_writers: [{zone: kv, rate: 2, keys: 5, nodes: [node2]}]"))
    expected = KeyvalWriterSpec(name="writer", zone="kv", nodes=("node2",), rate=2.0, keys=5)
    assert sc.keyval_writers == (expected,)
    wrong_side = r"keyval_writers\[0\]\.zone: node node1 has no http keyval_zone"
    with pytest.raises(scenario.ScenarioError, match=wrong_side):
        scenario.loads(scenario_text("keyval_writers: [{zone: kv, side: http}]"), filename="s.yaml")


def test_the_zone_sync_partition_scenario_diverges_then_converges_after_the_heal():
    sc = scenario.load(ROOT / "scenarios" / "zone-sync-partition.yaml")
    cl, reports = run(sc)
    report = reports["sessions"]
    assert report.ok and report.judged_keys == 200 and report.reference_ms == 120_000
    assert report.max_divergent_keys > 100 and report.time_to_converge_ms is not None
    assert report.time_to_converge_ms <= 1000
    isolated = [r for r in cl.sampler.rows if r["node"] == "node3"]
    by_time = {r["time_s"]: r for r in isolated}
    assert by_time[59.0]["zone_sync_nodes_online"] == 3 and by_time[100.0]["zone_sync_nodes_online"] == 1
    assert by_time[100.0]["zone_sync_records_pending"] > 0
    assert by_time[125.0]["zone_sync_records_pending"] == 0
    assert cl.nodes["node1"].stream.server_zones["tcp"].sessions["2xx"] > 0


# ---------------------------------------------------------------------------------------------
# Property: whatever happens, once the mesh is whole and writes stop, the nodes converge

OPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NODES), st.sampled_from(("a", "b", "c", "d"))),
    st.tuples(st.just("partition"), st.sets(st.sampled_from(NODES), min_size=1, max_size=2)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("crash"), st.sampled_from(NODES)),
    st.tuples(st.just("restart"), st.sampled_from(NODES)),
    st.tuples(st.just("cut"), st.sampled_from(NODES), st.sampled_from(NODES)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 6000), OPS), max_size=30))
def test_after_any_schedule_of_writes_and_faults_the_healed_cluster_converges_with_no_lost_update(schedule):
    with tempfile.TemporaryDirectory() as tmp:
        cl = cluster.Cluster(SCENARIO, start_workloads=False, sample=False, state_dir=tmp)
        kv = KeyvalClient(cl, "kv")
        seq = iter(range(10**6))

        def apply(ev):
            op = ev._value
            kind = op[0]
            if kind == "write":
                kv.set(op[1], op[2], f"v{next(seq)}")
            elif kind == "partition":
                cl.network.partition(sorted(op[1]), [n for n in NODES if n not in op[1]])
            elif kind == "heal":
                cl.network.heal()
            elif kind == "cut" and op[1] != op[2]:
                cl.network.cut(op[1], op[2])
            elif kind == "crash" and cl.nodes[op[1]].up:
                cl.nodes[op[1]].crash()
            elif kind == "restart":
                cl.nodes[op[1]].restart()

        t = 500.0
        for gap, op in schedule:
            t += gap  # distinct instants: no two writes share a timestamp
            Timeout(cl.env, t, op).callbacks.append(apply)
        cl.run(t + 1)
        cl.network.heal()
        for node in cl.nodes.values():
            if not node.up:
                node.restart()
        cl.run(t + 30_000)
        report = report_for_cluster(cl, kv.history, "kv")
        assert report.converged, report.divergent_keys
        assert report.lost_updates == []
        assert report.judged_keys == len({x.key for x in kv.history})
