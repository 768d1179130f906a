"""zone_sync between nodes: delivery, queues, buffers, the mesh under faults, LWW, skew, restarts."""

from __future__ import annotations

import pytest

from sim.checks.replication import report_for_cluster
from sim.cluster import cluster, scenario
from sim.stream.zone_sync import ESTABLISHED, HEADER_BYTES, ZoneSync
from sim.workload.keyval_writers import KeyvalClient

LATENCY = 1.0  # one way, node <-> node
BANDWIDTH = 125_000.0  # bytes per ms (1 Gbit/s)
HANDSHAKE = 2 * LATENCY
# one record "a" = "1": 24 bytes of record overhead + key + value; header + zone name "kv"
ONE_RECORD_MSG = HEADER_BYTES + len("kv") + 24 + 1 + 1


SERVERS = "zone_sync_server cluster.local:9000 resolve;"


def conf(keyval="keyval_zone zone=kv:1m timeout=1h sync;", servers=SERVERS, extra=""):
    return f"""
    stream {{
      resolver 127.0.0.53;
      {keyval}
      server {{
        listen 9000;
        zone_sync;
        {servers}
        {extra}
      }}
    }}
    """


def make(text=None, *, nodes=3, faults="", state_dir=None, hosts=True):
    text = text or conf()
    indented = "\n".join("  " + line for line in text.strip("\n").splitlines())
    names = ", ".join(f"node{i + 1}" for i in range(nodes))
    yaml_text = f"""
seed: 3
duration: 60s
nodes: {nodes}
network: {{node_latency_ms: {LATENCY}}}
{"hosts: {cluster.local: [" + names + "]}" if hosts else ""}
{faults}
nginx_conf_inline: |
{indented}
"""
    sc = scenario.loads(yaml_text, filename="zs.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False, state_dir=state_dir)
    return cl, KeyvalClient(cl, "kv")


def values(cl, key, zone="kv"):
    return {name: n.stream_keyvals[zone].get().get(key) for name, n in cl.nodes.items()}


def online(cl):
    return {name: (n.zone_sync.nodes_online if n.up else None) for name, n in cl.nodes.items()}


# ---------------------------------------------------------------------------------------------
# Delivery, queues and counters


def test_a_write_on_node1_reaches_every_other_node_within_interval_plus_link_latency():
    cl, kv = make()
    cl.run(1500)
    kv.set("node1", "a", "1")
    arrival = 2000 + LATENCY + ONE_RECORD_MSG / BANDWIDTH  # the poll at 2 s, then the link
    assert arrival <= 1500 + 1000 + LATENCY + 1
    cl.run(arrival - 0.0001)
    assert values(cl, "a") == {"node1": "1", "node2": None, "node3": None}
    cl.run(arrival + 0.0001)
    assert values(cl, "a") == {"node1": "1", "node2": "1", "node3": "1"}


def test_records_pending_counts_the_output_queue_and_drains_to_zero_at_the_poll():
    cl, kv = make()
    cl.run(1500)
    kv.set("node1", "a", "1")
    kv.set("node1", "b", "2")
    zs = cl.nodes["node1"].zone_sync
    assert zs.zones["kv"].records_pending == 2 and zs.records_pending_total() == 2
    cl.run(2000.5)
    assert zs.records_pending_total() == 0  # in flight for one link latency
    cl.run(2001.5)
    assert [z.records_total for z in (n.stream_keyvals["kv"] for n in cl.nodes.values())] == [2, 2, 2]


def test_message_counters_follow_the_record_encoding_and_a_silent_node_sends_nothing():
    cl, kv = make()
    cl.run(1500)
    kv.set("node1", "a", "1")
    cl.run(5000)
    n1, n2, n3 = (cl.nodes[f"node{i}"].zone_sync for i in (1, 2, 3))
    # one message per connected node, the node itself included (it reads its own message back,
    # as NGINX Plus does: nginx-plus-go-client's suite sees msgs_in > 0 on the only writer)
    assert (n1.msgs_out, n1.bytes_out, n1.msgs_in, n1.bytes_in) == (3, 3 * ONE_RECORD_MSG, 1, ONE_RECORD_MSG)
    assert (n2.msgs_out, n2.bytes_out, n2.msgs_in, n2.bytes_in) == (0, 0, 1, ONE_RECORD_MSG)
    assert (n3.msgs_in, n3.bytes_in) == (1, ONE_RECORD_MSG)


def test_repeated_updates_of_one_key_between_polls_coalesce_into_one_record():
    cl, kv = make()
    cl.run(1500)
    for i in range(5):
        kv.set("node1", "a", str(i))
    assert cl.nodes["node1"].zone_sync.records_pending_total() == 1
    cl.run(2500)
    assert cl.nodes["node2"].zone_sync.bytes_in == ONE_RECORD_MSG
    assert values(cl, "a") == {"node1": "4", "node2": "4", "node3": "4"}


def test_buffers_limit_what_one_poll_sends_and_the_rest_waits_for_the_next():
    # room for 3 records of 26 bytes per 96-byte buffer (96 - 12 - 2 = 82), one buffer per poll
    cl, kv = make(conf(extra="zone_sync_buffers 1 96; zone_sync_recv_buffer_size 96;"))
    cl.run(1500)
    for i in range(7):
        kv.set("node1", f"k{i}", "v")
    zs = cl.nodes["node1"].zone_sync
    cl.run(2500)
    assert zs.records_pending_total() == 4 and cl.nodes["node2"].stream_keyvals["kv"].records_total == 3
    cl.run(3500)
    assert zs.records_pending_total() == 1
    cl.run(4500)
    assert zs.records_pending_total() == 0 and cl.nodes["node3"].stream_keyvals["kv"].records_total == 7
    assert cl.nodes["node2"].zone_sync.msgs_in == 3


def test_a_record_larger_than_one_buffer_is_skipped_and_counted():
    cl, kv = make(conf(extra="zone_sync_buffers 2 96; zone_sync_recv_buffer_size 96;"))
    cl.run(1500)
    kv.set("node1", "big", "x" * 100)
    kv.set("node1", "small", "y")
    cl.run(2500)
    assert values(cl, "big") == {"node1": "x" * 100, "node2": None, "node3": None}
    assert values(cl, "small") == {"node1": "y", "node2": "y", "node3": "y"}
    assert cl.nodes["node1"].zone_sync.records_skipped == 1
    assert cl.nodes["node1"].zone_sync.records_pending_total() == 0


def test_deletes_stay_on_the_node_where_they_are_made():
    cl, kv = make()
    cl.run(1500)
    kv.set("node1", "a", "1")
    cl.run(2500)
    kv.delete("node2", "a")
    cl.run(10_000)
    assert values(cl, "a") == {"node1": "1", "node2": None, "node3": "1"}


def test_a_replicated_key_expires_on_every_node_by_its_own_lifetime():
    cl, kv = make(conf(keyval="keyval_zone zone=kv:1m timeout=5s sync;"))
    cl.run(1500)
    kv.set("node1", "a", "1")  # expires on node1 at 6.5 s
    # written to node2's connection at 2 s with 4.5 s to live, it arrives one transfer later
    arrival = 2000 + LATENCY + ONE_RECORD_MSG / BANDWIDTH
    cl.run(6499)
    assert values(cl, "a") == {"node1": "1", "node2": "1", "node3": "1"}
    cl.run(6500.5)
    assert values(cl, "a") == {"node1": None, "node2": "1", "node3": "1"}
    cl.run(arrival + 4500 + 0.001)
    assert values(cl, "a") == {"node1": None, "node2": None, "node3": None}
    # gone from every read, but held in memory (records_total) until each zone is next written
    assert [n.stream_keyvals["kv"].records_total for n in cl.nodes.values()] == [1, 1, 1]
    kv.set("node2", "b", "2")
    assert [n.stream_keyvals["kv"].records_total for n in cl.nodes.values()] == [1, 1, 1]
    assert cl.nodes["node2"].stream_keyvals["kv"].get() == {"b": "2"}


def test_zones_without_sync_are_not_replicated():
    cl, kv = make(conf(keyval="keyval_zone zone=kv:1m timeout=1h;"))
    cl.run(1500)
    kv.set("node1", "a", "1")
    cl.run(5000)
    assert values(cl, "a") == {"node1": "1", "node2": None, "node3": None}
    assert cl.nodes["node1"].zone_sync.zones == {} and cl.nodes["node1"].zone_sync.msgs_out == 0


def test_a_node_without_zone_sync_in_its_configuration_has_none():
    sc = scenario.loads("nodes: 1\nnginx_conf_inline: 'stream { server { listen 1; return x; } }'\n")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    assert cl.nodes["node1"].zone_sync is None and cl.nodes["node1"].stream is not None


# ---------------------------------------------------------------------------------------------
# The mesh: nodes_online, timeouts, reconnects


def test_nodes_online_is_n_when_the_cluster_name_also_resolves_to_the_node_itself():
    cl, _ = make()
    cl.run(HANDSHAKE - 0.5)
    assert online(cl) == {"node1": 1, "node2": 1, "node3": 1}  # only the node itself so far
    cl.run(HANDSHAKE + 0.5)
    assert online(cl) == {"node1": 3, "node2": 3, "node3": 3}


def test_nodes_online_is_n_minus_1_when_each_node_lists_only_the_others(tmp_path):
    addresses = {f"node{i}": f"127.0.0.{10 + i}" for i in (1, 2, 3)}
    lines = ["seed: 1", "nodes:"]
    for name in addresses:
        others = " ".join(f"zone_sync_server {a}:9000;" for n, a in addresses.items() if n != name)
        (tmp_path / f"{name}.conf").write_text(conf(servers=others))
        lines.append(f"  - {{name: {name}, nginx_conf: {name}.conf}}")
    sc = scenario.loads("\n".join(lines) + "\n", filename=str(tmp_path / "s.yaml"), base_dir=tmp_path)
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    cl.run(1000)
    assert online(cl) == {"node1": 2, "node2": 2, "node3": 2}
    assert [c.is_self for c in cl.nodes["node1"].zone_sync.connections.values()] == [False, False]


def test_nodes_online_drops_after_zone_sync_timeout_during_a_partition_and_recovers_after_heal():
    faults = "faults: [{at: 10s, action: partition, nodes: [node3], other: [node1, node2], duration: 20s}]"
    cl, _ = make(conf(extra="zone_sync_connect_timeout 1s;"), faults=faults)
    # the last exchange before the cut reached the peers at 9 s + 1 ms; the first poll at least
    # zone_sync_timeout (5 s) later, at 15 s, closes the connections across the partition
    cl.run(14_999)
    assert online(cl) == {"node1": 3, "node2": 3, "node3": 3}
    cl.run(15_001)
    assert online(cl) == {"node1": 2, "node2": 2, "node3": 1}
    cl.run(29_999)
    assert online(cl) == {"node1": 2, "node2": 2, "node3": 1}
    # retries every 1 s + 1 s connect timeout: attempts at 16, 18, ..., 30 s; the one at 30 s
    # starts as the partition heals and completes after one round trip
    cl.run(30_000 + HANDSHAKE + 0.5)
    assert online(cl) == {"node1": 3, "node2": 3, "node3": 3}
    events = [e for e in cl.nodes["node3"].events if e[1] == "zone_sync"]
    assert (15_000, "zone_sync", "connection to node1 timed out") in events
    assert (30_000 + HANDSHAKE, "zone_sync", "connected to node1") in events


def test_records_pending_grows_on_an_isolated_node_and_empties_after_heal():
    faults = "faults: [{at: 10s, action: partition, nodes: [node3], other: [node1, node2], duration: 20s}]"
    cl, kv = make(conf(extra="zone_sync_connect_timeout 1s;"), faults=faults)
    cl.run(16_000)
    for i in range(4):
        kv.set("node3", f"k{i}", "v")
    cl.run(29_000)
    assert cl.nodes["node3"].zone_sync.records_pending_total() == 4
    assert values(cl, "k0") == {"node1": None, "node2": None, "node3": "v"}
    cl.run(32_000)
    assert cl.nodes["node3"].zone_sync.records_pending_total() == 0
    assert values(cl, "k3") == {"node1": "v", "node2": "v", "node3": "v"}


def test_a_short_cut_keeps_the_connection_and_delivers_what_was_written_during_it():
    cl, kv = make()
    cl.run(1500)
    cl.network.cut("node1", "node2")
    kv.set("node1", "a", "1")
    cl.run(3500)
    assert values(cl, "a") == {"node1": "1", "node2": None, "node3": "1"}
    cl.network.cut("node1", "node2", False)
    cl.run(4500)
    assert values(cl, "a") == {"node1": "1", "node2": "1", "node3": "1"}
    assert cl.nodes["node1"].zone_sync.connections["127.0.0.12"].connects == 1  # never reconnected


def test_writes_on_both_sides_of_a_partition_converge_to_the_lww_winners_after_heal():
    faults = "faults: [{at: 10s, action: partition, nodes: [node1], other: [node2, node3], duration: 20s}]"
    cl, kv = make(faults=faults)
    cl.run(5000)
    kv.set("node1", "a", "before")
    cl.run(12_000)
    kv.set("node1", "a", "n1")  # at 12 s
    kv.set("node3", "b", "n3-first")
    cl.run(13_000)
    kv.set("node2", "a", "n2")  # at 13 s: the later write wins
    kv.set("node1", "b", "n1-later")
    cl.run(25_000)
    assert values(cl, "a") == {"node1": "n1", "node2": "n2", "node3": "n2"}
    cl.run(45_000)
    assert values(cl, "a") == {"node1": "n2", "node2": "n2", "node3": "n2"}
    assert values(cl, "b") == {"node1": "n1-later", "node2": "n1-later", "node3": "n1-later"}
    report = report_for_cluster(cl, kv.history, "kv")
    assert report.ok and report.judged_keys == 2 and report.reordered == []


@pytest.mark.parametrize(
    ("offset_ms", "winner"),
    [(+10_000, "skewed"), (-10_000, "straight")],
)
def test_clock_skew_makes_the_skewed_nodes_write_win_or_lose_as_lww_says(offset_ms, winner):
    faults = "faults: [{at: 10s, action: partition, nodes: [node1], other: [node2, node3], duration: 20s}]"
    cl, kv = make(faults=faults)
    cl.nodes["node3"].clock.offset_ms = offset_ms
    cl.run(15_000)
    kv.set("node3", "k", "skewed")  # at 15 s by sim time, node3's clock says 15 s + offset
    cl.run(20_000)
    kv.set("node1", "k", "straight")  # at 20 s, later in real time
    cl.run(45_000)
    assert values(cl, "k") == {"node1": winner, "node2": winner, "node3": winner}
    report = report_for_cluster(cl, kv.history, "kv")
    assert report.ok
    # the checker names the write that lost although it came later in real time
    assert [(r.latest.value, r.winner.value) for r in report.reordered] == (
        [("straight", "skewed")] if winner == "skewed" else []
    )


def test_a_local_write_on_a_lagging_node_is_kept_there_but_ignored_everywhere_else():
    cl, kv = make()
    cl.nodes["node1"].clock.offset_ms = -10_000
    cl.run(1500)
    kv.set("node2", "k", "from-node2")
    cl.run(5000)
    kv.set("node1", "k", "from-node1")  # later, but node1's clock puts it 10 s in the past
    cl.run(10_000)
    assert values(cl, "k") == {"node1": "from-node1", "node2": "from-node2", "node3": "from-node2"}
    report = report_for_cluster(cl, kv.history, "kv")
    assert not report.converged and report.divergent_keys == ["k"]
    found = [(lu.node, lu.found, lu.expected) for lu in report.lost_updates]
    assert found == [("node1", "from-node1", "from-node2")]


# ---------------------------------------------------------------------------------------------
# Crash and restart


def test_crash_and_restart_with_a_state_file_loses_no_saved_key(tmp_path):
    cl, kv = make(conf(keyval="keyval_zone zone=kv:1m timeout=1h state=kv.json sync;"), state_dir=tmp_path)
    cl.run(1500)
    kv.set("node2", "a", "1")
    kv.set("node2", "b", "2")
    cl.nodes["node2"].crash()  # before the poll: nothing was sent
    cl.run(3000)
    assert values(cl, "a")["node1"] is None and online(cl) == {"node1": 2, "node2": None, "node3": 2}
    cl.nodes["node2"].restart()
    assert cl.nodes["node2"].stream_keyvals["kv"].get() == {"a": "1", "b": "2"}
    cl.run(6000)
    assert values(cl, "a") == {"node1": "1", "node2": "1", "node3": "1"}
    assert values(cl, "b") == {"node1": "2", "node2": "2", "node3": "2"}
    assert report_for_cluster(cl, kv.history, "kv").ok


def test_crash_without_a_state_file_loses_unsent_writes_and_the_checker_says_so():
    cl, kv = make()
    cl.run(1500)
    kv.set("node2", "a", "1")
    cl.nodes["node2"].crash()
    cl.run(3000)
    cl.nodes["node2"].restart()
    cl.run(6000)
    assert values(cl, "a") == {"node1": None, "node2": None, "node3": None}
    report = report_for_cluster(cl, kv.history, "kv")
    assert report.converged and not report.ok
    assert sorted(lu.node for lu in report.lost_updates) == ["node1", "node2", "node3"]


def test_a_restarted_node_gets_everything_it_missed_from_the_snapshots_of_the_others():
    cl, kv = make()
    cl.run(1500)
    kv.set("node1", "old", "1")
    cl.run(2500)
    cl.nodes["node3"].crash()
    kv.set("node1", "during", "2")
    kv.set("node2", "during2", "3")
    cl.run(5000)
    cl.nodes["node3"].restart()
    assert cl.nodes["node3"].stream_keyvals["kv"].get() == {}
    cl.run(8000)
    assert cl.nodes["node3"].stream_keyvals["kv"].get() == {"old": "1", "during": "2", "during2": "3"}
    assert online(cl) == {"node1": 3, "node2": 3, "node3": 3}
    # the others noticed the new process (a reset), reconnected and sent snapshots
    assert cl.nodes["node1"].zone_sync.connections["127.0.0.13"].connects == 2


def test_a_restart_without_crash_also_makes_the_peers_reconnect():
    cl, kv = make()
    cl.run(1500)
    old = cl.nodes["node2"].zone_sync
    cl.nodes["node2"].restart()
    assert old.stopped and cl.nodes["node2"].zone_sync is not old
    cl.run(3500)
    assert online(cl) == {"node1": 3, "node2": 3, "node3": 3}
    assert cl.nodes["node1"].zone_sync.connections["127.0.0.12"].connects == 2


def test_a_crashed_node_refuses_connections_until_it_restarts():
    cl, _ = make()
    cl.nodes["node3"].crash()
    cl.run(5000)
    conn = cl.nodes["node1"].zone_sync.connections["127.0.0.13"]
    assert conn.state != ESTABLISHED and conn.connects == 0
    assert isinstance(cl.nodes["node3"].zone_sync, ZoneSync) and cl.nodes["node3"].zone_sync.stopped


def test_records_learned_from_a_peer_are_never_forwarded_so_a_node_can_miss_them_for_good():
    # only local writes enter the output queue, and snapshots go out only on (re)connection
    cl, kv = make()
    cl.run(500)
    kv.set("node1", "a", "1")
    cl.run(1002)
    cl.nodes["node1"].restart()  # no state file: node1 forgets its own write
    cl.nodes["node2"].restart()  # node2 too; its new connection to node1 carries an empty snapshot
    cl.network.cut("node1", "node3")  # node3, the last holder, cannot reach node1
    cl.run(3500)
    assert values(cl, "a") == {"node1": None, "node2": "1", "node3": "1"}  # node3's snapshot to node2
    cl.network.cut("node1", "node3", False)
    cl.nodes["node3"].crash()
    cl.run(4000)
    cl.nodes["node3"].restart()
    cl.run(30_000)
    assert online(cl) == {"node1": 3, "node2": 3, "node3": 3}
    assert values(cl, "a") == {"node1": None, "node2": "1", "node3": "1"}
    assert not report_for_cluster(cl, kv.history, "kv").converged
