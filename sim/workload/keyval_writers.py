"""Simulated API clients that write keyval pairs, so virtual runs exercise zone_sync.

A :class:`KeyvalClient` makes the writes an NGINX Plus API client would make against one keyval
zone on a chosen node: POST a key the node does not have, PATCH one it has, PATCH ``null`` to
delete it. The write goes straight to the node's :class:`sim.zones.keyval.KeyvalZone` (no HTTP); a
node that is down, or a write the zone refuses (full zone, bad key), is counted as failed.
Every successful write is recorded in a :class:`sim.checks.replication.WriteHistory` with its sim time,
origin node and the timestamp the node's clock gave the record, for the replication checker.

:class:`KeyvalWriters` drives a scenario's ``keyval_writers``: each entry writes to its nodes
at a rate (Poisson or evenly spaced), choosing keys uniformly or by a Zipf popularity, or taking
them in turn (``order: cycle``: key0, key1, ... on each node, so that a pass of ``keys`` writes
touches every key once); a share of the writes to present keys can be deletes. Values are unique per write
(``"<node>:<writer>:<n>"``, padded to ``value_bytes``) so a value names the write that made it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial

import numpy as np

from sim.checks.replication import Write, WriteHistory, zone_of
from sim.core.errors import SimError
from sim.core.rng import Batched
from sim.workload.arrivals import Arrivals


@dataclass(frozen=True)
class KeyvalWriterSpec:
    """One ``keyval_writers`` entry of a scenario."""

    name: str
    zone: str
    side: str = "stream"  # "stream" (stream keyval_zone) | "http"
    nodes: tuple[str, ...] | None = None  # None: every node
    rate: float = 1.0  # writes per second per node
    arrivals: str = "poisson"  # "poisson" | "constant"
    keys: int = 100
    key_prefix: str = "key"
    order: str = "random"  # "random" (uniform or zipf) | "cycle" (every key in turn)
    zipf: float = 0.0  # 0: every key equally likely
    delete_share: float = 0.0  # of writes that find the key present on the node
    value_bytes: int = 0  # values padded to at least this many bytes
    start_ms: float = 0.0
    stop_ms: float | None = None


class KeyvalClient:
    """Writes to one keyval zone on any node of a cluster, recorded in ``history``."""

    def __init__(self, cluster, zone: str, side: str = "stream", history: WriteHistory | None = None):
        self.cluster = cluster
        self.env = cluster.env
        self.zone = zone
        self.side = side
        self.history = history if history is not None else WriteHistory()
        self.succeeded = 0
        self.failed = 0
        self.failures: dict[str, int] = {}  # reason ("unavailable", an error code) -> count

    def zone_on(self, node_name: str):
        """The zone on a running node, or None (down, or the zone is not configured there)."""
        node = self.cluster.nodes[node_name]
        if not node.up:
            return None
        return zone_of(node, self.zone, self.side)

    def _fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def set(self, node_name: str, key: str, value: str) -> str | None:
        """POST (key absent) or PATCH (key present) on ``node_name``; the op, or None on failure."""
        z = self.zone_on(node_name)
        if z is None:
            self._fail("unavailable")
            return None
        op = "patch" if z.has(key) else "post"
        try:
            (z.patch if op == "patch" else z.post)({key: value})
        except SimError as err:
            self._fail(getattr(err, "code", type(err).__name__))
            return None
        rec = z.record(key)
        self.succeeded += 1
        self.history.record(Write(self.env.now, node_name, self.zone, key, value, rec.timestamp, op))
        return op

    def delete(self, node_name: str, key: str) -> bool:
        """PATCH ``{key: null}`` on ``node_name`` (with ``sync``, this node only)."""
        z = self.zone_on(node_name)
        if z is None:
            self._fail("unavailable")
            return False
        try:
            z.patch({key: None})
        except SimError as err:
            self._fail(getattr(err, "code", type(err).__name__))
            return False
        self.succeeded += 1
        self.history.record(Write(self.env.now, node_name, self.zone, key, None, None, "delete"))
        return True


class KeyvalWriter:
    """One :class:`KeyvalWriterSpec` writing at its nodes (one simpy event per write)."""

    def __init__(self, cluster, spec: KeyvalWriterSpec, client: KeyvalClient):
        self.cluster = cluster
        self.env = cluster.env
        self.spec = spec
        self.client = client
        names = list(spec.nodes) if spec.nodes else list(cluster.nodes)
        self._drivers = [_Driver(self, n, cluster.streams.get(f"kvwriter/{spec.name}/{n}")) for n in names]

    def start(self) -> None:
        for d in self._drivers:
            d.start()


class _Driver:
    def __init__(self, writer: KeyvalWriter, node_name: str, rng: np.random.Generator):
        self.writer = writer
        self.env = writer.env
        self.spec = spec = writer.spec
        self.client = writer.client
        self.node_name = node_name
        self.seq = 0
        self._u = Batched(rng.random, 1024)
        self.arrivals = Arrivals(self.env, self._write, rate=spec.rate, arrivals=spec.arrivals,
                                 start_ms=spec.start_ms, stop_ms=spec.stop_ms,
                                 exp=Batched(rng.standard_exponential, 1024))
        n = max(1, spec.keys)
        if spec.order == "cycle":
            self._key = partial(next, itertools.cycle(range(n)))  # 0, 1, ..., n - 1, 0, ...
        elif spec.zipf:
            probs = np.arange(1, n + 1, dtype=float) ** (-spec.zipf)
            probs = probs / probs.sum()
            self._key = Batched(lambda k: rng.choice(n, k, p=probs), 1024)
        else:
            self._key = Batched(lambda k: rng.integers(0, n, k), 1024)

    def start(self) -> None:
        self.arrivals.start()

    def _write(self) -> None:
        spec = self.spec
        key = f"{spec.key_prefix}{self._key()}"
        u = self._u()
        if spec.delete_share:
            z = self.client.zone_on(self.node_name)
            if z is not None and z.has(key) and u < spec.delete_share:
                self.client.delete(self.node_name, key)
                return
        self.seq += 1
        value = f"{self.node_name}:{spec.name}:{self.seq}"
        if len(value) < spec.value_bytes:
            value = value.ljust(spec.value_bytes, ".")
        self.client.set(self.node_name, key, value)


class KeyvalWriters:
    """All keyval writers of a run, sharing one :class:`WriteHistory`."""

    def __init__(self, cluster, specs=()):
        self.cluster = cluster
        self.history = WriteHistory()
        self.clients: dict[tuple[str, str], KeyvalClient] = {}
        self.writers: list[KeyvalWriter] = []
        for spec in specs:
            self.writers.append(KeyvalWriter(cluster, spec, self.client(spec.zone, spec.side)))

    def client(self, zone: str, side: str = "stream") -> KeyvalClient:
        """The client of one zone (created on first use), writing into the shared history."""
        c = self.clients.get((zone, side))
        if c is None:
            c = self.clients[(zone, side)] = KeyvalClient(self.cluster, zone, side, self.history)
        return c

    def zones(self) -> list[tuple[str, str]]:
        """``(zone, side)`` of every zone written to."""
        return list(self.clients)

    def start(self) -> None:
        for w in self.writers:
            w.start()


def start_keyval_writers(cluster, specs=None) -> KeyvalWriters:
    """Create and start the scenario's keyval writers (``cluster.scenario.keyval_writers``)."""
    if specs is None:
        specs = cluster.scenario.keyval_writers
    writers = KeyvalWriters(cluster, specs)
    writers.start()
    return writers


__all__ = ["KeyvalClient", "KeyvalWriter", "KeyvalWriterSpec", "KeyvalWriters", "start_keyval_writers"]
