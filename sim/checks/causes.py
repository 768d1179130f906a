"""Why a node does not hold the last-write-wins winner: causes the checker can prove from a run.

The replication checker (:mod:`sim.checks.replication`) finds lost updates and divergent keys.
This module names the cause of each one. A cause is given only when the run's own record
proves it. Anything else is ``unexplained``, which is a bug in the model. The causes are listed
in :data:`CAUSES`; when several apply, the first in the list is given:

``zone_full``
    the node dropped a remote record of the key because its zone had no memory left
    (``apply_remote`` answered ``no_memory``) at or after the winner was written. Writes refused
    on their origin (the API answers 413) never enter the history. They are counted per node
    in the report.
``clock_skew``
    the node holds a write made later in sim time than the winner but with a smaller
    timestamp. With agreeing clocks a later write has the larger timestamp, so the clocks
    disagreed. A local write always replaces the local pair, newer or not, so the losing value
    got onto a node (its writer, or a node that wrote over the winner and then took that write)
    and the rest of the cluster ignores it. Also when such a skewed write was made on the node
    itself and displaced the winner there, and an older record that beats the skewed one but
    not the winner then arrived and replaced it: the node holds neither.
``origin_lost``
    the winner's origin crashed after the write and no longer holds it. Its state file did not
    have it (no ``state=``, or the crash came before the record reached a peer that could pass
    it on: received records are forwarded only in snapshots).
``expired_before_delivery``
    the winner's record expired in its origin's output queue, or arrived with no lifetime left.
``late_expiry``
    every write of the key has expired, but the node's copy arrived late. Its lifetime counts
    from the arrival, so it outlives the origin's copy.
``down_or_partitioned``
    at the end the node is down, or no running node that holds the winner has a working
    zone_sync connection to it (the link is cut, or the connection is not re-established yet),
    or the winner's origin is down and nobody else holds it.
``expiring_at_end``
    (divergent keys only) the key's pairs expire within the checker's margin of the end, so
    nodes may differ by a transfer time. Such keys are not judged.
``resurrected_after_delete``
    (resurrected keys only) a local delete, undone by another node's copy. Deletes never travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CAUSES = (
    "zone_full",
    "clock_skew",
    "origin_lost",
    "expired_before_delivery",
    "late_expiry",
    "down_or_partitioned",
    "expiring_at_end",
    "resurrected_after_delete",
    "unexplained",
)


@dataclass
class NodeEvidence:
    """What one node did in a run that can explain a lost update."""

    up: bool = True
    zones: list = field(default_factory=list)  # zone objects, oldest first; the last is current
    crashed_at: list[float] = field(default_factory=list)  # sim times of crashes and restarts
    connected_to: frozenset[str] = frozenset()  # nodes it can send to now (established, link working)

    @property
    def zone(self):
        return self.zones[-1] if self.zones else None

    def record(self, key: str):
        z = self.zone
        return None if z is None else z.record(key)

    def holds(self, key: str, value: str) -> bool:
        rec = self.record(key)
        return rec is not None and rec.value == value

    def _latest(self, table: str, key: str) -> float | None:
        times = [getattr(z, table).get(key) for z in self.zones]
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def dropped_since(self, key: str, since: float) -> bool:
        t = self._latest("dropped_keys", key)
        return t is not None and t >= since

    def expired_since(self, key: str, since: float) -> bool:
        for table in ("expired_unsent", "expired_on_arrival"):
            t = self._latest(table, key)
            if t is not None and t >= since:
                return True
        return False

    def crashed_between(self, start: float, end: float) -> bool:
        return any(start <= t <= end for t in self.crashed_at)

    def zone_full_counts(self) -> dict[str, int]:
        return {
            "writes_refused": sum(z.writes_refused for z in self.zones),
            "records_dropped": sum(z.records_dropped for z in self.zones),
        }


@dataclass
class Evidence:
    """Per node, what the run did; :func:`evidence_from_cluster` collects it."""

    nodes: dict[str, NodeEvidence]
    end_ms: float
    timeout_ms: float | None = None

    def node(self, name: str) -> NodeEvidence:
        return self.nodes.get(name) or NodeEvidence()


def evidence_from_cluster(cluster, zone: str, side: str, probe=None) -> Evidence:
    """What the cluster's nodes and zones recorded, as they are now."""
    from sim.checks.probe import zone_of

    out: dict[str, NodeEvidence] = {}
    timeout = None
    for name, node in cluster.nodes.items():
        zones = list(probe.zones_seen.get(name, ())) if probe is not None else []
        current = zone_of(node, zone, side)
        if current is not None:
            if not any(z is current for z in zones):
                zones.append(current)
            if timeout is None:
                timeout = current.conf.timeout_ms
        crashes = [t for t, kind, text in node.events if kind == "node" and text in ("crashed", "restarted")]
        connected = set()
        zs = node.zone_sync if node.up else None
        if zs is not None and not zs.stopped:
            for conn in zs.connections.values():
                if conn.is_self or conn.node is None or conn.state != "established":
                    continue
                if not cluster.network.link(name, conn.node.name).cut:
                    connected.add(conn.node.name)
        out[name] = NodeEvidence(node.up, zones, crashes, frozenset(connected))
    return Evidence(out, cluster.env.now, timeout)


def explain_lost(lost, winner, found_write, ev: Evidence | None, local_writes=()) -> str:
    """The cause of one :class:`sim.checks.replication.LostUpdate`.

    ``winner`` is the key's last-write-wins write (None when the key should be gone because
    every write has expired), ``found_write`` the history's write of the value the node holds
    (None: nothing, or a value no write made), ``local_writes`` the history's writes of the key
    made on the lost update's node.
    """
    node = lost.node
    if ev is not None and not ev.node(node).up:
        return "down_or_partitioned"
    if winner is not None and ev is not None and ev.node(node).dropped_since(lost.key, winner.at_ms):
        return "zone_full"
    if (
        winner is not None
        and found_write is not None
        and found_write.at_ms > winner.at_ms
        and found_write.order < winner.order
    ):
        # with agreeing clocks a later write carries the larger timestamp: the clocks disagreed,
        # and a local write (which always replaces the local pair) put the losing value here
        return "clock_skew"
    if winner is not None and any(
        w.value is not None and w.at_ms > winner.at_ms and w.order < winner.order for w in local_writes
    ):
        # the same disagreement, one step removed: a skewed local write replaced the winner on
        # this node, and an older record that beats the skewed one (but not the winner) came in
        # afterwards and took its place, so the node ends with neither
        return "clock_skew"
    if ev is None:
        return "unexplained"
    if winner is not None:
        origin = ev.node(winner.node)
        if origin.crashed_between(winner.at_ms, ev.end_ms) and not origin.holds(lost.key, winner.value):
            return "origin_lost"
        if origin.expired_since(lost.key, winner.at_ms) or ev.node(node).expired_since(lost.key, winner.at_ms):
            return "expired_before_delivery"
    elif found_write is not None and ev.timeout_ms is not None:
        rec = ev.node(node).record(lost.key)
        if rec is not None and rec.expire_at is not None and rec.expire_at > found_write.at_ms + ev.timeout_ms:
            return "late_expiry"
    if winner is not None:
        holders = [n for n, e in ev.nodes.items() if n != node and e.up and e.holds(lost.key, winner.value)]
        reaching = [n for n in holders if node in ev.nodes[n].connected_to]
        if not reaching and (holders or not ev.node(winner.node).up):
            return "down_or_partitioned"
    return "unexplained"


def first_cause(causes) -> str:
    """The cause listed first in :data:`CAUSES` among ``causes``."""
    return min(causes, key=CAUSES.index)


def count(causes) -> dict[str, int]:
    """``{cause: n}`` in the order of :data:`CAUSES`, causes that occur only."""
    out: dict[str, int] = {}
    for c in causes:
        out[c] = out.get(c, 0) + 1
    return {c: out[c] for c in CAUSES if c in out}


__all__ = ["CAUSES", "Evidence", "NodeEvidence", "count", "evidence_from_cluster", "explain_lost", "first_cause"]
