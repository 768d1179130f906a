"""The network between nodes and backends, and between nodes (the zone_sync mesh).

A link joins two endpoints (node names or backend addresses) and carries a one-way latency, a
loss probability, a bandwidth and a ``cut`` flag. Links are symmetric: ``link(a, b)`` and
``link(b, a)`` are the same object. Loss is modelled the way TCP experiences it: a lost SYN or
segment is retransmitted after an RTO (1 s initially, doubling), so loss adds delay, and enough
of it turns into a connect timeout. A cut link drops everything: connects time out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.core.rng import Batched

#: TCP's initial retransmission timeout (RFC 6298), what a lost SYN costs.
INITIAL_RTO_MS = 1000.0


@dataclass
class LinkSpec:
    latency_ms: float = 0.5  # one way
    loss: float = 0.0  # probability that a packet (SYN, segment) is lost
    bandwidth_bytes_per_ms: float = 125_000.0  # 1 Gbit/s
    cut: bool = False
    extra_latency_ms: float = 0.0  # added by a "slow link" fault


class Link:
    """One symmetric link."""

    __slots__ = ("a", "b", "latency_ms", "loss", "bandwidth", "cut", "extra_latency_ms", "_u")

    def __init__(self, a: str, b: str, spec: LinkSpec, rng):
        self.a, self.b = a, b
        self.latency_ms = spec.latency_ms
        self.loss = spec.loss
        self.bandwidth = spec.bandwidth_bytes_per_ms
        self.cut = spec.cut
        self.extra_latency_ms = spec.extra_latency_ms
        self._u = Batched(rng.random, 1024)

    @property
    def one_way_ms(self) -> float:
        return self.latency_ms + self.extra_latency_ms

    def connect_ms(self, timeout_ms: float) -> float | None:
        """Time to complete a TCP handshake, or None if it cannot finish within ``timeout_ms``."""
        if self.cut:
            return None
        rtt = 2.0 * (self.latency_ms + self.extra_latency_ms)
        if self.loss <= 0.0:
            return rtt if rtt <= timeout_ms else None
        waited = 0.0
        rto = INITIAL_RTO_MS
        while self._u() < self.loss:
            waited += rto
            rto *= 2.0
            if waited + rtt > timeout_ms:
                return None
        total = waited + rtt
        return total if total <= timeout_ms else None

    def transfer_ms(self, nbytes: int) -> float:
        """One-way delivery time of ``nbytes`` on an established connection (loss -> retransmits)."""
        t = self.latency_ms + self.extra_latency_ms + nbytes / self.bandwidth
        if self.loss > 0.0:
            rto = INITIAL_RTO_MS
            while self._u() < self.loss:
                t += rto
                rto *= 2.0
        return t


class Network:
    """All links of a cluster, created on first use from the defaults."""

    def __init__(self, streams, default: LinkSpec | None = None, node_default: LinkSpec | None = None):
        self._streams = streams
        self.default = default or LinkSpec()
        self.node_default = node_default or LinkSpec()
        self._links: dict[tuple[str, str], Link] = {}
        self._nodes: set[str] = set()
        self._overrides: dict[tuple[str, str], LinkSpec] = {}

    def register_node(self, name: str) -> None:
        self._nodes.add(name)

    @staticmethod
    def _key(a: str, b: str) -> tuple[str, str]:
        return (a, b) if a <= b else (b, a)

    def configure(self, a: str, b: str, spec: LinkSpec) -> None:
        """Set the properties of one link before or during a run."""
        key = self._key(a, b)
        self._overrides[key] = spec
        link = self._links.get(key)
        if link is not None:
            link.latency_ms, link.loss = spec.latency_ms, spec.loss
            link.bandwidth, link.cut, link.extra_latency_ms = (
                spec.bandwidth_bytes_per_ms,
                spec.cut,
                spec.extra_latency_ms,
            )

    def link(self, a: str, b: str) -> Link:
        key = self._key(a, b)
        link = self._links.get(key)
        if link is None:
            spec = self._overrides.get(key)
            if spec is None:
                both_nodes = a in self._nodes and b in self._nodes
                spec = self.node_default if both_nodes else self.default
            link = Link(key[0], key[1], spec, self._streams.get(f"network/{key[0]}|{key[1]}"))
            self._links[key] = link
        return link

    # --- faults ---------------------------------------------------------------------------

    def cut(self, a: str, b: str, cut: bool = True) -> None:
        self.link(a, b).cut = cut

    def slow(self, a: str, b: str, extra_latency_ms: float) -> None:
        self.link(a, b).extra_latency_ms = extra_latency_ms

    def partition(self, side_a: list[str], side_b: list[str]) -> None:
        """Cut every link between the two sets of endpoints."""
        for x in side_a:
            for y in side_b:
                if x != y:
                    self.cut(x, y, True)

    def heal(self, side_a: list[str] | None = None, side_b: list[str] | None = None) -> None:
        """Undo a partition (both sides given) or every cut between nodes (no arguments)."""
        if side_a is None or side_b is None:
            for (x, y), link in self._links.items():
                if x in self._nodes and y in self._nodes:
                    link.cut = False
            return
        for x in side_a:
            for y in side_b:
                if x != y:
                    self.cut(x, y, False)
