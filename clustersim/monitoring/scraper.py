"""A Prometheus scraper of the simulated cluster: what a monitoring system sees, and when.

:class:`Scraper` wakes up every ``interval`` of simulated time (first at ``offset``) and, for
every node, reads the node's API objects as ``GET /api/9/...`` would return them at that instant
(:func:`api.render.node_state`, the API's own renderers; a down node fails the scrape and gives
only ``nginxplus_up 0``), then keeps what nginx-prometheus-exporter would have published
(:mod:`clustersim.monitoring.exporter`), stamped with the scraper's clock: the run's epoch plus
simulated time, with no node's clock offset (Prometheus stamps samples with its own time).

Reading the objects counts nothing on the node: the scraper's own requests do not show up in
the API's server zone, so a run with a scraper gives the same numbers as one without.

:meth:`Scraper.summary` is what the run's ``summary.json`` gets under ``monitoring``, so that
expectations can assert a symptom: per metric family the number of series, counter resets
(a counter lower than at the previous scrape, which ``rate()`` reads as a restart from zero),
value changes between scrapes (``changes()``), series that appeared after the first scrape or
vanished before the last, the minimum and maximum seen; per node the same totals and the
largest gap between the node's ``timestamp`` field and the scraper's clock.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from simpy.events import Timeout

from api.render import node_state
from clustersim.monitoring import exposition
from clustersim.monitoring.exporter import COUNTER, FAMILIES, Sample, samples

JOB = "clustersim"

#: The files :meth:`Scraper.write` produces, in the run's output directory.
PROM_FILE = "scrapes.prom"
OPENMETRICS_FILE = "scrapes.om.txt"


def parse_iso(text: str) -> int:
    """An API timestamp (``2026-08-21T15:05:05.865Z``) as Unix milliseconds."""
    return int(round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class Scrape:
    """One node at one scrape: when (sim ms and Unix ms), whether it answered, what it said."""

    sim_ms: float
    unix_ms: int
    node: str
    up: bool
    samples: tuple[Sample, ...]
    node_timestamp_ms: int | None  # the ``timestamp`` field of /nginx (the node's own clock)
    generation: int | None


class Scraper:
    """Scrapes every node of ``cluster`` every ``interval_ms`` of simulated time."""

    def __init__(self, cluster, interval_ms: float, *, offset_ms: float = 0.0, version: int = 9,
                 job: str = JOB):
        if interval_ms <= 0:
            raise ValueError("scrape interval must be positive")
        self.cluster = cluster
        self.interval_ms = float(interval_ms)
        self.offset_ms = float(offset_ms)
        self.version = version
        self.job = job
        self.scrapes: list[Scrape] = []
        self._running = False

    def start(self) -> Scraper:
        if not self._running:
            self._running = True
            env = self.cluster.env
            ev = Timeout(env, max(0.0, self.offset_ms - env.now))
            ev.callbacks.append(self._tick)
        return self

    def stop(self) -> None:
        self._running = False

    def _tick(self, _ev) -> None:
        if not self._running:
            return
        self.scrape_now()
        ev = Timeout(self.cluster.env, self.interval_ms)
        ev.callbacks.append(self._tick)

    def scrape_now(self) -> list[Scrape]:
        """Scrape every node at the current simulated time (also callable by hand)."""
        cluster = self.cluster
        now = cluster.env.now
        unix_ms = int(round(cluster.epoch_ms + now))
        taken = []
        for name, node in cluster.nodes.items():
            state = node_state(node, self.version) if node.up else None
            ts = gen = None
            if state is not None:
                info = state.get("nginx") or {}
                if info.get("timestamp"):
                    ts = parse_iso(info["timestamp"])
                gen = info.get("generation")
            scrape = Scrape(now, unix_ms, name, state is not None, tuple(samples(state)), ts, gen)
            self.scrapes.append(scrape)
            taken.append(scrape)
        return taken

    # --- reading back -------------------------------------------------------------------------

    def labels_of(self, scrape: Scrape, labels) -> tuple[tuple[str, str], ...]:
        """A sample's labels as Prometheus stores them: the target's ``job`` and ``instance``
        (the node's name) first."""
        return (("instance", scrape.node), ("job", self.job), *labels)

    def series(self) -> dict[tuple[str, tuple], list[tuple[int, float]]]:
        """Every series ``(family, labels)`` with its points ``(unix_ms, value)`` in time order,
        series in the order they were first seen."""
        out: dict[tuple[str, tuple], list[tuple[int, float]]] = {}
        for sc in self.scrapes:
            for name, labels, value in sc.samples:
                out.setdefault((name, self.labels_of(sc, labels)), []).append((sc.unix_ms, value))
        return out

    def points(self, family: str, node: str | None = None, **labels: str) -> list[tuple[float, float]]:
        """``(sim seconds, value)`` of one family at each scrape, summed over the series whose
        labels include ``labels`` (and ``instance=node``): what a graph of ``sum(family)`` shows."""
        want = dict(labels)
        if node is not None:
            want["instance"] = node
        by_time: dict[float, float] = {}
        for sc in self.scrapes:
            for name, labs, value in sc.samples:
                if name != family:
                    continue
                full = dict(self.labels_of(sc, labs))
                if all(full.get(k) == v for k, v in want.items()):
                    t = sc.sim_ms / 1000.0
                    by_time[t] = by_time.get(t, 0.0) + value
        return sorted(by_time.items())

    def summary(self) -> dict:
        """The run's ``monitoring`` section (see the module docstring)."""
        series = self.series()
        times = sorted({sc.unix_ms for sc in self.scrapes})
        first, last = (times[0], times[-1]) if times else (None, None)
        families: dict[str, dict] = {}
        nodes: dict[str, dict] = {}
        for (name, labels), pts in series.items():
            kind = FAMILIES[name][0]
            node = dict(labels)["instance"]
            values = [v for _t, v in pts]
            resets = sum(1 for a, b in zip(values, values[1:], strict=False) if b < a) if kind == COUNTER else 0
            changes = sum(1 for a, b in zip(values, values[1:], strict=False) if b != a)
            fam = families.setdefault(name, {"type": kind, "series": 0, "resets": 0, "changes": 0,
                                             "appeared": 0, "vanished": 0, "min": None, "max": None})
            fam["series"] += 1
            fam["resets"] += resets
            fam["changes"] += changes
            fam["appeared"] += pts[0][0] > first
            fam["vanished"] += pts[-1][0] < last
            fam["min"] = min(values) if fam["min"] is None else min(fam["min"], *values)
            fam["max"] = max(values) if fam["max"] is None else max(fam["max"], *values)
            n = nodes.setdefault(node, {"series": 0, "resets": 0})
            n["series"] += 1
            n["resets"] += resets
        for name in nodes:
            mine = [sc for sc in self.scrapes if sc.node == name]
            skews = [sc.node_timestamp_ms - sc.unix_ms for sc in mine if sc.node_timestamp_ms is not None]
            gens = [sc.generation for sc in mine if sc.generation is not None]
            nodes[name].update({
                "scrapes": len(mine),
                "failed": sum(1 for sc in mine if not sc.up),
                "timestamp_skew_s": round(max(skews, key=abs) / 1000.0, 3) if skews else None,
                "generations_seen": len(set(gens)),
            })
        return {
            "interval_s": self.interval_ms / 1000.0,
            "scrapes": len(times),
            "series": len(series),
            "samples": sum(len(sc.samples) for sc in self.scrapes),
            "families": dict(sorted(families.items())),
            "nodes": nodes,
        }

    def write(self, out: Path) -> list[Path]:
        """Write ``scrapes.prom`` and ``scrapes.om.txt`` into ``out``; returns their paths."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        series = self.series()
        prom = out / PROM_FILE
        with prom.open("w") as f:
            exposition.write_prometheus(series, f)
        om = out / OPENMETRICS_FILE
        with om.open("w") as f:
            exposition.write_openmetrics(series, f)
        return [prom, om]


def attach(cluster, interval_ms: float, **kwargs) -> Scraper:
    """Start a scraper on ``cluster`` (kept as ``cluster.scraper``, which the run's report writes)."""
    scraper = Scraper(cluster, interval_ms, **kwargs).start()
    cluster.scraper = scraper
    return scraper


def scrape_interval(text: str) -> float:
    """``--scrape-interval``: an nginx-style duration ("15s", "500ms"; a bare number is seconds)."""
    from sim.core.clock import UnitError, parse_duration

    try:
        ms = float(parse_duration(text))
    except (UnitError, TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: {e}") from None
    if ms <= 0:
        raise argparse.ArgumentTypeError("the scrape interval must be positive")
    return ms
