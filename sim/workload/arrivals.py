"""Open-loop arrival processes: when the next client request, session or write happens.

Every simulated client population (HTTP workloads, stream workloads, keyval writers) arrives
independently of how fast the system answers. :class:`Arrivals` schedules one simpy timeout per
arrival and calls ``fire()`` at each: Poisson (exponential gaps) or evenly spaced at a constant
rate, or along a piecewise-linear rate curve by thinning (candidates at the curve's peak rate,
each kept with probability rate(t) / peak), between ``start_ms`` and ``stop_ms``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from simpy.events import Timeout

from sim.core.rng import Batched


def rate_at(curve: tuple[tuple[float, float], ...], t: float) -> float:
    """The rate of a piecewise-linear curve of ``(t_ms, rate)`` points at time ``t``."""
    times = [p[0] for p in curve]
    i = bisect.bisect_right(times, t)
    if i == 0:
        return curve[0][1]
    if i >= len(curve):
        return curve[-1][1]
    (t0, r0), (t1, r1) = curve[i - 1], curve[i]
    return r0 + (r1 - r0) * (t - t0) / (t1 - t0) if t1 > t0 else r1


class Arrivals:
    """Calls ``fire()`` at each arrival of an open-loop process (rates are per second)."""

    def __init__(self, env, fire: Callable[[], None], *, rate: float, arrivals: str = "poisson",
                 start_ms: float = 0.0, stop_ms: float | None = None,
                 curve: tuple[tuple[float, float], ...] = (), exp: Callable[[], float],
                 uniform: Callable[[], float] | None = None):
        self.env = env
        self.fire = fire
        self.constant = arrivals == "constant"
        self.start_ms = start_ms
        self.stop_ms = stop_ms
        self.curve = curve
        self.peak = max([rate] if not curve else [r for _, r in curve])
        self._exp = exp  # standard exponential draws (shared with the caller's stream)
        self._u = uniform  # uniform draws for thinning, needed with a curve

    @classmethod
    def from_rng(cls, env, fire, rng, batch: int = 4096, **kw) -> Arrivals:
        return cls(env, fire, exp=Batched(rng.standard_exponential, batch), uniform=Batched(rng.random, batch), **kw)

    def start(self) -> None:
        if self.peak <= 0:
            return
        self._schedule(max(self.start_ms - self.env.now, 0.0) + self._gap())

    def _gap(self) -> float:
        if self.constant:
            return 1000.0 / self.peak
        return self._exp() * 1000.0 / self.peak

    def _schedule(self, delay: float) -> None:
        stop = self.stop_ms
        if stop is not None and self.env.now + delay >= stop:
            return
        ev = Timeout(self.env, delay)
        ev.callbacks.append(self._arrive)

    def _arrive(self, _ev) -> None:
        self._schedule(self._gap())
        if self.curve and self._u() * self.peak >= rate_at(self.curve, self.env.now):
            return
        self.fire()
