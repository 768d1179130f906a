"""Open-loop TCP clients of a scenario's ``stream_workloads``: one arrival process per node,
each arrival a :class:`sim.stream.side.StreamSession` opened on the node's stream side."""

from __future__ import annotations

from dataclasses import dataclass

from sim.core import dists
from sim.core.rng import Batched
from sim.stream.side import StreamSession
from sim.workload.arrivals import Arrivals


@dataclass(frozen=True)
class StreamWorkloadSpec:
    """Open-loop TCP clients of a scenario's ``stream_workloads`` entry."""

    name: str
    nodes: tuple[str, ...] | None = None  # None: every node
    port: int = 12345
    rate: float = 10.0  # sessions per second per node
    arrivals: str = "poisson"  # "poisson" | "constant"
    duration: dists.DistSpec = dists.DistSpec("constant", (1000.0,))  # ms the client keeps the session
    bytes_sent: dists.DistSpec = dists.DistSpec("constant", (512.0,))  # client -> server bytes
    clients: int = 1000
    discard_share: float = 0.0  # connections closed before any data (probes, scanners)
    start_ms: float = 0.0
    stop_ms: float | None = None


class StreamWorkloadStats:
    """What the clients of one stream workload saw at one node."""

    __slots__ = ("opened", "refused", "completed", "discarded", "timed_out", "statuses")

    def __init__(self):
        self.opened = 0
        self.refused = 0
        self.completed = 0
        self.discarded = 0
        self.timed_out = 0  # ended by proxy_timeout (counted in completed, status 200)
        self.statuses: dict[int, int] = {}


class StreamWorkload:
    """Drives one :class:`StreamWorkloadSpec` at its nodes (one event per arrival)."""

    def __init__(self, env, spec: StreamWorkloadSpec, nodes: list, streams):
        self.env = env
        self.spec = spec
        self.nodes = nodes
        self.stats = {n.name: StreamWorkloadStats() for n in nodes}
        self._drivers = [
            _StreamDriver(self, n, streams.get(f"stream_workload/{spec.name}/{n.name}")) for n in nodes
        ]

    def start(self) -> None:
        for d in self._drivers:
            d.start()


class _StreamDriver:
    def __init__(self, workload: StreamWorkload, node, rng):
        self.env = workload.env
        self.spec = spec = workload.spec
        self.node = node
        self.stats = workload.stats[node.name]
        self._u = Batched(rng.random)
        self._client = Batched(lambda k: rng.integers(0, max(1, spec.clients), k))
        self._duration = spec.duration.sampler(rng)
        self._bytes = spec.bytes_sent.sampler(rng)
        self.arrivals = Arrivals(self.env, self._arrive, rate=spec.rate, arrivals=spec.arrivals,
                                 start_ms=spec.start_ms, stop_ms=spec.stop_ms,
                                 exp=Batched(rng.standard_exponential))

    def start(self) -> None:
        self.arrivals.start()

    def _arrive(self) -> None:
        spec = self.spec
        stats = self.stats
        stats.opened += 1
        c = self._client()
        ip = f"10.{(c >> 16) & 255}.{(c >> 8) & 255}.{c & 255}"
        discard = bool(spec.discard_share) and self._u() < spec.discard_share
        side = getattr(self.node, "stream", None)
        session = None
        if side is not None:
            session = side.open_session(
                spec.port, ip, int(self._bytes()), float(self._duration()), self._done, discard=discard
            )
        if session is None:
            stats.refused += 1

    def _done(self, session: StreamSession) -> None:
        stats = self.stats
        if session.status:
            stats.completed += 1
            stats.timed_out += session.timed_out
            stats.statuses[session.status] = stats.statuses.get(session.status, 0) + 1
        else:
            stats.discarded += 1


def start_stream_workloads(cluster, specs=None) -> list[StreamWorkload]:
    """Create and start the scenario's stream workloads (``cluster.scenario.stream_workloads``)."""
    if specs is None:
        specs = cluster.scenario.stream_workloads
    out = []
    for spec in specs:
        targets = [cluster.nodes[n] for n in spec.nodes] if spec.nodes else list(cluster.nodes.values())
        w = StreamWorkload(cluster.env, spec, targets, cluster.streams)
        w.start()
        out.append(w)
    return out


__all__ = ["StreamWorkload", "StreamWorkloadSpec", "StreamWorkloadStats", "start_stream_workloads"]
