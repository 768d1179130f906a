"""The points a sweep runs, and the seed of every run.

- ``grid``: every combination of the factors' levels; the last factor varies fastest.
- ``random``: ``samples`` points, each factor drawn independently (uniformly from its levels, or
  from its continuous range).
- ``latin``: a Latin hypercube of ``samples`` points: each factor's range (or list of levels) is
  cut into ``samples`` equal strata and every stratum is used once, in a random pairing.

The random designs draw from a stream of their own, derived from the sweep's seed, so the
points depend only on the sweep file. Seeds: with ``seeds: common`` (the default) replication
``r`` has the same seed at every point (common random numbers: two configurations are compared
on the same traffic, which narrows the confidence interval of their difference); with
``independent`` every run has a seed of its own. Either way a run's seed is a pure function of
the sweep's seed, the point and the replication, and is written in its row.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from clustersim.sweep.spec import Factor, Sweep


def _tidy(x: float) -> float:
    return float(f"{x:.6g}")


def _from_unit(f: Factor, u: float):
    if f.continuous is not None:
        kind, lo, hi = f.continuous
        if kind == "loguniform":
            return _tidy(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
        return _tidy(lo + u * (hi - lo))
    return f.levels[min(int(u * len(f.levels)), len(f.levels) - 1)]


def points(sweep: Sweep) -> list[dict]:
    """The design's points, each ``{factor name: level}``, in run order."""
    names = [f.name for f in sweep.factors]
    if sweep.design == "grid":
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(f.levels for f in sweep.factors))]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([sweep.seed, 0x5EED, len(names)])))
    n = sweep.samples
    out = [{} for _ in range(n)]
    for f in sweep.factors:
        if sweep.design == "random":
            us = rng.random(n)
        else:  # latin: one draw in each of n strata, strata shuffled per factor
            us = (rng.permutation(n) + rng.random(n)) / n
        for k in range(n):
            out[k][f.name] = _from_unit(f, float(us[k]))
    return out


def seed_for(sweep: Sweep, point: int, replication: int) -> int:
    """The seed of one run (a 32-bit number, so that it reads well in a table)."""
    key = [sweep.seed, replication] if sweep.seeds == "common" else [sweep.seed, point, replication]
    return int(np.random.SeedSequence(key).generate_state(1)[0])
