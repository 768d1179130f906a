"""The replication probe: how many keys the nodes disagree on, sampled during a run.

A :class:`ReplicationProbe` watches one keyval zone on every node. It never copies a zone.
Each running node's zone carries a :class:`sim.zones.keyval_store.ZoneWatch`, which keeps a
digest of the zone's live pairs and reports every change of a key's live value to the probe
as it happens. The probe keeps a table of *disputed* keys only: for each key that the
running nodes do not all hold with one value, how many nodes hold each value (absent counts
as a value). A key missing from the table is held the same way by every running node. A
change moves one count from the old value to the new one. A key whose counts collapse to one
value leaves the table. A key not in the table that changes on one node enters it with
``n - 1`` nodes on the old value. A record application therefore costs the probe O(1),
whatever the number of keys and nodes.

A sample costs O(nodes). It brings each watch up to the sample instant (pairs that expired
since leave it), then compares the digests. When all digests are equal the table must be empty,
and it is cleared. The number of divergent keys is the size of the table, less the keys the
write history deleted (deletes are local: other nodes keep such keys until they expire, so
they are left out, as the final check leaves them out). When the set of running nodes
changes (a crash, a restart, a reload that replaced the zone), the probe builds the table
again from the live pairs, at that sample only. So the divergence curve, ``converged_since``
and the time to converge are exact at the probe's interval, as with a full comparison.

Two different sets of pairs can give equal digests only through a 64-bit hash collision.
The digest decides nothing alone: it only confirms an empty table.
"""

from __future__ import annotations

from simpy.events import Timeout

from sim.zones.keyval import KeyvalZone


def zone_of(node, zone: str, side: str = "stream"):
    """The keyval zone ``zone`` of ``node`` on the ``http`` or ``stream`` side (or None)."""
    zones = node.stream_keyvals if side == "stream" else node.keyvals
    return zones.get(zone)


class ReplicationProbe:
    """Samples one zone on every node every ``interval_ms`` and keeps the divergence over time.

    ``series`` holds ``(time_ms, divergent_keys, nodes_up)`` each time either number changes
    (memory stays small however long the run). The nodes count as converged while all of them
    are up and none differs; ``converged_since`` is when the current such period began.
    ``zones_seen`` keeps, per node, every zone object the probe has watched (a restart replaces
    them), so the checker can read what each one refused or dropped.
    """

    def __init__(self, cluster, zone: str, side: str = "stream", *, interval_ms: float = 100.0,
                 history=None, start: bool = True):
        self.cluster = cluster
        self.env = cluster.env
        self.zone = zone
        self.side = side
        self.interval_ms = interval_ms
        self.history = history
        self.series: list[tuple[float, int, int]] = []
        self.max_divergent = 0
        self.first_divergence_ms: float | None = None
        self.last_divergence_ms: float | None = None
        self.converged_since: float | None = None
        self.samples = 0
        self.rebuilds = 0
        self.corrections = 0  # samples whose equal digests contradicted the table (a bug)
        self.zones_seen: dict[str, list] = {}
        self._last: tuple[int, int] | None = None
        #: disputed keys: key -> {value or None: number of running nodes holding it}
        self._disputed: dict[str, dict[str | None, int]] = {}
        self._ignored: set[str] = set()
        self._ignored_disputed = 0
        self._members: list[tuple[str, KeyvalZone | None]] = []  # (node name, zone or None) of running nodes
        self._n = 0
        #: called as ``listener(probe, divergent)`` after every sample (a live view, a test's
        #: second opinion)
        self.sample_listeners: list = []
        if history is not None:
            self._ignored.update(history.deleted_keys.get(zone, ()))
            history.delete_listeners.append(self._deleted)
        if start:
            self.start()

    # --- the incremental table --------------------------------------------------------------------

    def _deleted(self, zone: str, key: str) -> None:
        """The history saw the first delete of ``key``: from now on it is left out."""
        if zone == self.zone and key not in self._ignored:
            self._ignored.add(key)
            if key in self._disputed:
                self._ignored_disputed += 1

    def _changed(self, key: str, old: str | None, new: str | None) -> None:
        """One running node's live value of ``key`` went from ``old`` to ``new``."""
        counts = self._disputed.get(key)
        if counts is None:
            n = self._n
            if n < 2:
                return
            # not disputed until now: every running node held ``old``
            self._disputed[key] = {old: n - 1, new: 1}
            if key in self._ignored:
                self._ignored_disputed += 1
            return
        left = counts[old] - 1
        if left:
            counts[old] = left
        else:
            del counts[old]
        counts[new] = counts.get(new, 0) + 1
        if len(counts) == 1:
            del self._disputed[key]
            if key in self._ignored:
                self._ignored_disputed -= 1

    def _running(self) -> list[tuple[str, KeyvalZone | None]]:
        return [(name, zone_of(node, self.zone, self.side)) for name, node in self.cluster.nodes.items() if node.up]

    def _rebuild(self, members: list[tuple[str, KeyvalZone | None]]) -> None:
        """The running nodes or their zone objects changed: watch the new set, recount from scratch."""
        self.rebuilds += 1
        keep = {id(z) for _n, z in members if z is not None}
        for _name, z in self._members:
            if z is not None and id(z) not in keep:
                z.unwatch(self._changed)
        views: list[dict[str, str]] = []
        for name, z in members:
            if z is None:
                views.append({})
                continue
            if z.watched is None or self._changed not in z.watched.listeners:
                z.watch(self._changed)
                seen = self.zones_seen.setdefault(name, [])
                if not any(x is z for x in seen):
                    seen.append(z)
            z.watch_sync()
            views.append(z.live_view())
        self._members = members
        self._n = len(members)
        disputed: dict[str, dict[str | None, int]] = {}
        if views and any(v != views[0] for v in views[1:]):
            keys: set[str] = set().union(*views)
            for key in keys:
                counts: dict[str | None, int] = {}
                for v in views:
                    val = v.get(key)
                    counts[val] = counts.get(val, 0) + 1
                if len(counts) > 1:
                    disputed[key] = counts
        self._disputed = disputed
        self._ignored_disputed = sum(1 for k in disputed if k in self._ignored)

    def divergent_now(self) -> list[str]:
        """The keys the running nodes disagree on at the last sample (deleted keys left out), sorted."""
        return sorted(k for k in self._disputed if k not in self._ignored)

    def digests(self) -> dict[str, int]:
        """Each running node's digest of the zone's live pairs (0: the node has no such zone)."""
        return {name: (z.watch_sync() if z is not None else 0) for name, z in self._members}

    # --- sampling ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.sample()
        ev = Timeout(self.env, self.interval_ms)
        ev.callbacks.append(self._tick)

    def _tick(self, _ev) -> None:
        self.sample()
        ev = Timeout(self.env, self.interval_ms)
        ev.callbacks.append(self._tick)

    def sample(self) -> int:
        now = self.env.now
        self.samples += 1
        members = self._running()
        old = self._members
        if len(members) != len(old) or any(a[0] != b[0] or a[1] is not b[1] for a, b in zip(members, old, strict=True)):
            self._rebuild(members)
        else:
            first = None
            same = True
            for _name, z in members:
                d = z.watch_sync() if z is not None else 0
                if first is None:
                    first = d
                elif d != first:
                    same = False
            if same and self._disputed:
                # equal digests, so equal live pairs everywhere, yet keys in dispute: the table
                # missed a change. Counted (the tests require none) and cleared.
                self.corrections += 1
                self._disputed.clear()
                self._ignored_disputed = 0
        n = len(self._disputed) - self._ignored_disputed
        up = len(members)
        if n:
            if self.first_divergence_ms is None:
                self.first_divergence_ms = now
            self.last_divergence_ms = now
            self.max_divergent = max(self.max_divergent, n)
        whole = n == 0 and up == len(self.cluster.nodes)
        if whole and self.converged_since is None:
            self.converged_since = now
        elif not whole:
            self.converged_since = None
        if (n, up) != self._last:
            self._last = (n, up)
            self.series.append((now, n, up))
        for listener in self.sample_listeners:
            listener(self, n)
        return n


__all__ = ["ReplicationProbe", "zone_of"]
