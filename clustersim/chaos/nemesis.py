"""The nemesis: random fault schedules drawn from the vocabulary of a scenario's faults.

A schedule is a list of :class:`Step` (each a fault that starts at ``at_ms`` and heals
``duration_ms`` later). Every step heals before ``heal_by_ms``, so a run ends with a quiet tail
in which nothing is broken and the checker can ask whether the nodes converged. The kinds:

``partition``   a random set of nodes cut off from the rest, healed after the duration
``cut_link``    one node<->node link cut, restored after the duration
``slow_link``   one link with extra latency, back to normal after the duration
``crash``       a node crashes and restarts after the duration, keeping its ``state=`` files
``crash_wipe``  the same, with its state files lost in the crash (a node rebuilt on a new disk)
``clock_offset`` a node's clock runs ahead or behind by up to ``max_offset_ms``, then is reset
``reload``      ``nginx -s reload`` of a node (zone_sync reconnects; zones are kept)

Schedules depend only on the seed and the index, so schedule ``i`` of seed ``s`` can be drawn
again alone (``clustersim chaos ... --only i``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

KINDS = ("partition", "cut_link", "slow_link", "crash", "crash_wipe", "clock_offset", "reload")


@dataclass(frozen=True)
class Step:
    kind: str
    at_ms: float
    duration_ms: float
    nodes: tuple[str, ...]  # partition: one side; links: the two ends; node faults: the node
    offset_ms: float = 0.0  # clock_offset: the offset; slow_link: the extra latency

    def describe(self) -> str:
        what = {"partition": "partition " + "+".join(self.nodes), "cut_link": "cut " + "|".join(self.nodes),
                "slow_link": f"slow {'|'.join(self.nodes)} +{self.offset_ms:g}ms",
                "clock_offset": f"clock {self.nodes[0]} {self.offset_ms:+g}ms"}.get(self.kind, f"{self.kind} {self.nodes[0]}")
        return f"{what} @{self.at_ms / 1000:g}s for {self.duration_ms / 1000:g}s"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["nodes"] = list(self.nodes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Step:
        return cls(d["kind"], float(d["at_ms"]), float(d["duration_ms"]), tuple(d["nodes"]), float(d.get("offset_ms", 0.0)))


@dataclass(frozen=True)
class Nemesis:
    """How schedules are drawn: which kinds, how many steps, in which window, how long each."""

    nodes: tuple[str, ...]
    start_ms: float
    heal_by_ms: float
    kinds: tuple[str, ...] = KINDS
    max_steps: int = 4
    min_duration_ms: float = 1000.0
    max_duration_ms: float = 20_000.0
    max_offset_ms: float = 3000.0
    max_extra_latency_ms: float = 200.0

    def __post_init__(self):
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind {unknown[0]!r} (known: {', '.join(KINDS)})")
        if len(self.nodes) < 2:
            raise ValueError("a chaos campaign needs at least 2 nodes")
        if self.heal_by_ms - self.start_ms < self.min_duration_ms:
            raise ValueError("the fault window is shorter than the shortest fault")

    def schedule(self, seed: int, index: int) -> list[Step]:
        """Schedule ``index`` of campaign ``seed``: 1 to ``max_steps`` steps, sorted by start."""
        rng = np.random.default_rng([seed, index])
        steps = []
        for _ in range(int(rng.integers(1, self.max_steps + 1))):
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            longest = min(self.max_duration_ms, self.heal_by_ms - self.start_ms)
            duration = float(round(rng.uniform(self.min_duration_ms, longest)))
            at = float(round(rng.uniform(self.start_ms, self.heal_by_ms - duration)))
            names = list(self.nodes)
            offset = 0.0
            if kind == "partition":
                size = int(rng.integers(1, len(names) // 2 + 1))
                picked = tuple(sorted(rng.choice(names, size, replace=False).tolist()))
            elif kind in ("cut_link", "slow_link"):
                picked = tuple(sorted(rng.choice(names, 2, replace=False).tolist()))
                if kind == "slow_link":
                    offset = float(round(rng.uniform(1.0, self.max_extra_latency_ms)))
            else:
                picked = (names[int(rng.integers(len(names)))],)
                if kind == "clock_offset":
                    offset = float(round(rng.uniform(-self.max_offset_ms, self.max_offset_ms)))
            if kind == "reload":
                duration = 0.0
            steps.append(Step(kind, at, duration, picked, offset))
        return sorted(steps, key=lambda s: (s.at_ms, s.kind, s.nodes))


__all__ = ["KINDS", "Nemesis", "Step"]
