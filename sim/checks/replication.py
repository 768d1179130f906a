"""The replication checker: did zone_sync bring every node to the last-write-wins state?

Inputs are a :class:`WriteHistory` (every keyval write the simulated clients made: sim time,
node, key, value or delete, and the timestamp the node's clock gave the record) and the nodes'
final contents of one zone. :func:`check` judges them by nginx's rules:

* **the winner** of a key is its write with the greatest ``(timestamp, origin node)``, the order
  :meth:`sim.zones.keyval.KeyvalZone.apply_remote` uses; a write that happened later in sim time but
  carries a smaller timestamp (a node whose clock lags) loses, and is listed in ``reordered``;
* **lost updates**: a node whose final value of a key is not the winner's value (or lacks the
  key while the winner should still be live);
* **resurrected keys**: deletes are local in nginx, so a key deleted on a node and not written
  again afterwards may come back from another node's snapshot; each such key is listed;
* **convergence**: every node holds the same pairs, ignoring keys the history deleted (other
  nodes keep those until their timeout, by design).

With ``timeout_ms`` and ``end_ms``, keys whose winner expires near the end (within
``expiry_margin_ms``) are not judged, and keys whose every write has expired must be gone.

Every lost update, divergent key and resurrected key carries a ``cause`` that the run proves
(:mod:`sim.checks.causes`): a full zone, clock skew, an origin that lost the record in a crash,
expiry, a node still down or cut off at the end, or ``unexplained``, which is a model bug.

:class:`ReplicationProbe` (:mod:`sim.checks.probe`) samples the nodes during a run (every
``interval_ms``) at a cost that does not grow with the number of keys. It gives the
divergence over time and the instant the nodes last became equal. :func:`report_for_cluster`
puts both together with the reference instant (the last write, or the last heal, restore or
restart in the fault log, whichever is later), which gives the time to converge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sim.checks.causes import CAUSES, Evidence, count, evidence_from_cluster, explain_lost, first_cause
from sim.checks.probe import ReplicationProbe, zone_of

#: Fault-log actions after which the mesh may have become whole again.
HEAL_ACTIONS = frozenset(
    {"heal", "partition:healed", "restore_link", "cut_link:healed", "crash_node:healed", "restart_node"}
)


# ---------------------------------------------------------------------------------------------
# The write history


@dataclass(frozen=True, slots=True)
class Write:
    """One successful client write: ``value`` None is a delete (PATCH null), which is local."""

    at_ms: float  # sim time of the write
    node: str  # where it was made: the record's origin
    zone: str
    key: str
    value: str | None
    timestamp: float | None  # the origin node's clock (ms since the epoch); None for a delete
    op: str = "post"  # "post" | "patch" | "delete"

    @property
    def order(self) -> tuple[float, str]:
        """Last-write-wins order of the record this write created."""
        return (self.timestamp, self.node)


class WriteHistory:
    """Every write in the order it was made (shared by all clients of a run)."""

    def __init__(self):
        self.writes: list[Write] = []
        self.deleted_keys: dict[str, set[str]] = {}  # zone -> keys deleted at least once
        #: called as ``listener(zone, key)`` at the first delete of a key (the probe's hook)
        self.delete_listeners: list = []

    def record(self, write: Write) -> None:
        self.writes.append(write)
        if write.value is None:
            keys = self.deleted_keys.setdefault(write.zone, set())
            if write.key not in keys:
                keys.add(write.key)
                for listener in self.delete_listeners:
                    listener(write.zone, write.key)

    def __len__(self) -> int:
        return len(self.writes)

    def __iter__(self):
        return iter(self.writes)

    def for_zone(self, zone: str | None) -> list[Write]:
        return [w for w in self.writes if zone is None or w.zone == zone]

    @property
    def last_write_ms(self) -> float | None:
        return self.writes[-1].at_ms if self.writes else None


# ---------------------------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True, slots=True)
class LostUpdate:
    key: str
    node: str
    expected: str | None  # the winner's value (None: the key should be gone)
    found: str | None  # what the node holds (None: nothing)
    winner_node: str | None = None
    cause: str = "unexplained"  # one of sim.checks.causes.CAUSES


@dataclass(frozen=True, slots=True)
class Resurrected:
    key: str
    node: str
    deleted_at_ms: float
    value: str
    cause: str = "resurrected_after_delete"


@dataclass(frozen=True, slots=True)
class Reordered:
    """The latest write of a key in real (sim) time lost to an earlier one with a later clock."""

    key: str
    latest: Write
    winner: Write


@dataclass
class ReplicationReport:
    nodes: tuple[str, ...]
    zone: str | None
    writes: int
    keys: int
    judged_keys: int
    converged: bool
    divergent_keys: list[str] = field(default_factory=list)
    lost_updates: list[LostUpdate] = field(default_factory=list)
    resurrected: list[Resurrected] = field(default_factory=list)
    reordered: list[Reordered] = field(default_factory=list)
    reference_ms: float | None = None
    converged_at_ms: float | None = None
    time_to_converge_ms: float | None = None
    max_divergent_keys: int | None = None
    first_divergence_ms: float | None = None
    last_divergence_ms: float | None = None
    #: divergent key -> its cause (sim.checks.causes)
    divergent_causes: dict[str, str] = field(default_factory=dict)
    #: node -> {"writes_refused", "records_dropped"} for lack of zone memory (nodes with any)
    zone_full: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Converged, nothing lost, nothing resurrected."""
        return self.converged and not self.lost_updates and not self.resurrected

    @property
    def unexplained(self) -> int:
        """Lost updates and divergent keys the run cannot account for: model bugs."""
        return sum(1 for x in self.lost_updates if x.cause == "unexplained") + sum(
            1 for c in self.divergent_causes.values() if c == "unexplained"
        )

    @property
    def explained(self) -> bool:
        return self.unexplained == 0

    def causes(self) -> dict[str, int]:
        """Lost updates and resurrected keys by cause, in the order of ``CAUSES``."""
        return count([x.cause for x in self.lost_updates] + [x.cause for x in self.resurrected])

    def summary(self) -> dict:
        """Plain numbers for a run's summary (JSON)."""
        return {
            "zone": self.zone,
            "nodes": list(self.nodes),
            "writes": self.writes,
            "keys": self.keys,
            "judged_keys": self.judged_keys,
            "converged": self.converged,
            "divergent_keys": len(self.divergent_keys),
            "lost_updates": len(self.lost_updates),
            "resurrected_keys": len(self.resurrected),
            "reordered_by_clock": len(self.reordered),
            "reference_ms": self.reference_ms,
            "converged_at_ms": self.converged_at_ms,
            "time_to_converge_ms": self.time_to_converge_ms,
            "max_divergent_keys": self.max_divergent_keys,
            "first_divergence_ms": self.first_divergence_ms,
            "last_divergence_ms": self.last_divergence_ms,
            "causes": self.causes(),
            "divergent_by_cause": count(self.divergent_causes.values()),
            "zone_full": self.zone_full,
            "unexplained": self.unexplained,
            "ok": self.ok,
        }


def winners(writes: Iterable[Write]) -> dict[str, Write]:
    """The last-write-wins winner of every key that has a non-delete write."""
    out: dict[str, Write] = {}
    for w in writes:
        if w.value is None:
            continue
        best = out.get(w.key)
        if best is None or w.order > best.order:
            out[w.key] = w
    return out


def check(
    history: WriteHistory | Iterable[Write],
    contents: Mapping[str, Mapping[str, str]],
    *,
    zone: str | None = None,
    end_ms: float | None = None,
    timeout_ms: float | None = None,
    expiry_margin_ms: float = 1000.0,
    reference_ms: float | None = None,
    probe: ReplicationProbe | None = None,
    evidence: Evidence | None = None,
) -> ReplicationReport:
    """Judge the final ``contents`` (``{node: {key: value}}``) of ``zone`` against the history.

    With ``evidence`` (what the run recorded, :func:`sim.checks.causes.evidence_from_cluster`)
    each lost update gets its cause; without it only clock skew, which the history alone
    proves, is told apart from ``unexplained``.
    """
    writes = history.for_zone(zone) if isinstance(history, WriteHistory) else [
        w for w in history if zone is None or w.zone == zone
    ]
    nodes = tuple(contents)
    won = winners(writes)
    deleted = {w.key for w in writes if w.value is None}
    keys = {w.key for w in writes}
    last_at: dict[str, float] = {}
    latest: dict[str, Write] = {}
    for w in writes:
        last_at[w.key] = max(last_at.get(w.key, -math.inf), w.at_ms)
        if w.value is not None and (w.key not in latest or w.at_ms >= latest[w.key].at_ms):
            latest[w.key] = w
    expiring = timeout_ms is not None and end_ms is not None

    by_value: dict[tuple[str, str], Write] = {}
    by_node: dict[tuple[str, str], list[Write]] = {}
    for w in writes:
        by_node.setdefault((w.key, w.node), []).append(w)
        if w.value is not None:
            by_value[(w.key, w.value)] = w  # values name their write; the latest one if not
    lost: list[LostUpdate] = []
    unjudged: set[str] = set()
    judged = 0
    for key in sorted(keys - deleted):
        win = won.get(key)
        if win is None:
            continue
        expected: str | None = win.value
        if expiring:
            if win.at_ms + timeout_ms > end_ms + expiry_margin_ms:
                pass  # the winner is still live everywhere
            elif last_at[key] + timeout_ms < end_ms - expiry_margin_ms:
                expected = None  # every write has expired: the key must be gone
            else:
                unjudged.add(key)
                continue  # expires around the end, or a later losing write is still live
        judged += 1
        for node in nodes:
            found = contents[node].get(key)
            if found != expected:
                x = LostUpdate(key, node, expected, found, win.node)
                winner = win if expected is not None else None
                found_write = by_value.get((key, found)) if found is not None else None
                cause = explain_lost(x, winner, found_write, evidence, by_node.get((key, node), ()))
                lost.append(LostUpdate(key, node, expected, found, win.node, cause))

    resurrected: list[Resurrected] = []
    last_delete: dict[tuple[str, str], float] = {}
    last_put: dict[str, float] = {}
    for w in writes:
        if w.value is None:
            last_delete[(w.node, w.key)] = w.at_ms
        else:
            last_put[w.key] = max(last_put.get(w.key, -math.inf), w.at_ms)
    for (node, key), t_del in sorted(last_delete.items()):
        if node not in contents or key not in contents[node]:
            continue
        if last_put.get(key, -math.inf) > t_del:
            continue  # written again after the delete: not a resurrection
        resurrected.append(Resurrected(key, node, t_del, contents[node][key]))

    reordered = [
        Reordered(key, latest[key], won[key])
        for key in sorted(won)
        if latest[key] is not won[key] and latest[key].order < won[key].order
    ]

    divergent = divergent_keys(contents, ignore=deleted)
    converged = not divergent
    key_causes: dict[str, list[str]] = {}
    for x in lost:
        key_causes.setdefault(x.key, []).append(x.cause)
    divergent_causes = {}
    for key in divergent:
        if key in key_causes:
            divergent_causes[key] = first_cause(key_causes[key])
        else:
            divergent_causes[key] = "expiring_at_end" if key in unjudged else "unexplained"
    zone_full = {}
    if evidence is not None:
        for name, ev in evidence.nodes.items():
            counts = ev.zone_full_counts()
            if any(counts.values()):
                zone_full[name] = counts
    report = ReplicationReport(
        nodes=nodes,
        zone=zone,
        writes=len(writes),
        keys=len(keys),
        judged_keys=judged,
        converged=converged,
        divergent_keys=divergent,
        lost_updates=lost,
        resurrected=resurrected,
        reordered=reordered,
        reference_ms=reference_ms,
        divergent_causes=divergent_causes,
        zone_full=zone_full,
    )
    if probe is not None:
        report.max_divergent_keys = probe.max_divergent
        report.first_divergence_ms = probe.first_divergence_ms
        report.last_divergence_ms = probe.last_divergence_ms
        report.converged_at_ms = probe.converged_since if converged else None
        if report.converged_at_ms is not None and reference_ms is not None:
            report.time_to_converge_ms = max(0.0, report.converged_at_ms - reference_ms)
    return report


def divergent_keys(
    contents: Mapping[str, Mapping[str, str]], ignore: set[str] | frozenset = frozenset()
) -> list[str]:
    """Keys not held with the same value by every node (``ignore`` left out), sorted."""
    tables = list(contents.values())
    if not tables:
        return []
    first = tables[0]
    if all(t == first for t in tables[1:]):
        return []
    out = set()
    for k in set().union(*tables):
        if k in ignore:
            continue
        v = first.get(k)
        if any(t.get(k) != v for t in tables):
            out.add(k)
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# Watching a run


def contents_of(
    cluster, zone: str, side: str = "stream", *, up_only: bool = True
) -> dict[str, dict[str, str]]:
    """``{node: {key: value}}`` of one zone on every (running) node."""
    out = {}
    for name, node in cluster.nodes.items():
        if up_only and not node.up:
            continue
        z = zone_of(node, zone, side)
        out[name] = z.get() if z is not None else {}
    return out


def reference_instant(cluster, history: WriteHistory | None, zone: str | None = None) -> float | None:
    """The later of the last write and the last heal/restore/restart in the fault log."""
    times = [t for t, action, _note in cluster.fault_log if action in HEAL_ACTIONS]
    if history is not None:
        ws = history.for_zone(zone)
        if ws:
            times.append(ws[-1].at_ms)
    return max(times) if times else None


def report_for_cluster(
    cluster,
    history: WriteHistory,
    zone: str,
    side: str = "stream",
    probe: ReplicationProbe | None = None,
    expiry_margin_ms: float = 1000.0,
) -> ReplicationReport:
    """Check the cluster as it is now (every node must be up for convergence to hold)."""
    contents = contents_of(cluster, zone, side, up_only=False)
    evidence = evidence_from_cluster(cluster, zone, side, probe)
    timeout = evidence.timeout_ms
    report = check(
        history,
        contents,
        zone=zone,
        end_ms=cluster.env.now,
        timeout_ms=timeout,
        expiry_margin_ms=expiry_margin_ms,
        reference_ms=reference_instant(cluster, history, zone),
        probe=probe,
        evidence=evidence,
    )
    if any(not n.up for n in cluster.nodes.values()):
        report.converged = False
        report.converged_at_ms = report.time_to_converge_ms = None
    return report


__all__ = [
    "CAUSES",
    "HEAL_ACTIONS",
    "LostUpdate",
    "Reordered",
    "ReplicationProbe",
    "ReplicationReport",
    "Resurrected",
    "Write",
    "WriteHistory",
    "check",
    "contents_of",
    "divergent_keys",
    "reference_instant",
    "report_for_cluster",
    "winners",
    "zone_of",
]
