"""Distributions for service times, sizes and inter-arrival times, drawn in numpy batches.

A scenario writes a distribution as a number (constant), or a mapping with one of these forms::

    {dist: constant, value: 5}
    {dist: exponential, mean: 20}
    {dist: lognormal, mean: 20, sigma: 0.5}     # mean of the distribution, not of the log
    {dist: uniform, low: 1, high: 9}
    {dist: normal, mean: 20, stddev: 4}          # clipped at 0
    {dist: pareto, scale: 1000, shape: 1.5}      # heavy tails for response sizes
    {dist: empirical, values: [100, 200], weights: [3, 1]}

:func:`parse` turns that into a callable returning one float per call, fed from a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.core.rng import Batched, Draws

KINDS = ("constant", "exponential", "lognormal", "uniform", "normal", "pareto", "empirical")


class DistError(ValueError):
    """A distribution spec that cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class DistSpec:
    kind: str
    params: tuple

    @property
    def mean(self) -> float:
        k, p = self.kind, self.params
        if k == "constant":
            return p[0]
        if k in ("exponential", "lognormal", "normal"):
            return p[0]
        if k == "uniform":
            return (p[0] + p[1]) / 2
        if k == "pareto":
            scale, shape = p
            return math.inf if shape <= 1 else scale * shape / (shape - 1)
        values, weights = p
        return float(np.dot(values, weights) / np.sum(weights))

    def sampler(self, rng: np.random.Generator, batch: int = 4096):
        """A zero-argument callable returning one draw per call."""
        if self.kind == "constant":
            v = float(self.params[0])
            return lambda: v
        return Batched(self._batch(rng), batch)

    def draws(self, rng: np.random.Generator, batch: int = 4096) -> Draws:
        """The same values as :meth:`sampler`, as a :class:`sim.core.rng.Draws` (for compiled callers)."""
        if self.kind == "constant":
            v = float(self.params[0])
            return Draws(lambda n: np.full(n, v), batch)
        return Draws(self._batch(rng), batch)

    def _batch(self, rng: np.random.Generator):
        """``n -> ndarray`` of ``n`` draws (any kind but constant)."""
        k, p = self.kind, self.params
        if k == "exponential":
            mean = p[0]
            return lambda n: rng.exponential(mean, n)
        if k == "lognormal":
            mean, sigma = p
            mu = math.log(mean) - sigma * sigma / 2
            return lambda n: rng.lognormal(mu, sigma, n)
        if k == "uniform":
            lo, hi = p
            return lambda n: rng.uniform(lo, hi, n)
        if k == "normal":
            mean, sd = p
            return lambda n: np.maximum(rng.normal(mean, sd, n), 0.0)
        if k == "pareto":
            scale, shape = p
            return lambda n: scale * (1.0 + rng.pareto(shape, n))
        values = np.asarray(p[0], dtype=float)
        probs = np.asarray(p[1], dtype=float)
        probs = probs / probs.sum()
        return lambda n: rng.choice(values, n, p=probs)


def _num(spec: dict, key: str, where: str, positive: bool = False) -> float:
    if key not in spec:
        raise DistError(f"{where}: missing '{key}'")
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
        raise DistError(f"{where}.{key}: expected a number, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise DistError(f"{where}.{key}: must be {'positive' if positive else 'non-negative'}, got {v!r}")
    return float(v)


def parse(spec, where: str = "distribution") -> DistSpec:
    """Validate a scenario's distribution spec; errors name ``where`` (the field path)."""
    if isinstance(spec, bool):
        raise DistError(f"{where}: expected a number or a mapping, got {spec!r}")
    if isinstance(spec, int | float):
        if spec < 0 or math.isnan(spec):
            raise DistError(f"{where}: must be non-negative, got {spec!r}")
        return DistSpec("constant", (float(spec),))
    if not isinstance(spec, dict):
        raise DistError(f"{where}: expected a number or a mapping, got {type(spec).__name__}")
    kind = spec.get("dist")
    if kind not in KINDS:
        raise DistError(f"{where}.dist: expected one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {
        "constant": {"value"},
        "exponential": {"mean"},
        "lognormal": {"mean", "sigma"},
        "uniform": {"low", "high"},
        "normal": {"mean", "stddev"},
        "pareto": {"scale", "shape"},
        "empirical": {"values", "weights"},
    }[kind]
    extra = set(spec) - allowed - {"dist"}
    if extra:
        raise DistError(f"{where}: unknown field(s) {', '.join(sorted(extra))} for dist {kind}")
    if kind == "constant":
        return DistSpec(kind, (_num(spec, "value", where),))
    if kind == "exponential":
        return DistSpec(kind, (_num(spec, "mean", where, positive=True),))
    if kind == "lognormal":
        return DistSpec(kind, (_num(spec, "mean", where, True), _num(spec, "sigma", where)))
    if kind == "uniform":
        lo, hi = _num(spec, "low", where), _num(spec, "high", where)
        if hi < lo:
            raise DistError(f"{where}.high: must be >= low")
        return DistSpec(kind, (lo, hi))
    if kind == "normal":
        return DistSpec(kind, (_num(spec, "mean", where), _num(spec, "stddev", where)))
    if kind == "pareto":
        return DistSpec(kind, (_num(spec, "scale", where, True), _num(spec, "shape", where, True)))
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        raise DistError(f"{where}.values: expected a non-empty list of numbers")
    weights = spec.get("weights", [1] * len(values))
    if not isinstance(weights, list) or len(weights) != len(values):
        raise DistError(f"{where}.weights: expected a list as long as values")
    for i, v in enumerate(values + weights):
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise DistError(f"{where}: entry {i} must be a non-negative number, got {v!r}")
    if sum(weights) <= 0:
        raise DistError(f"{where}.weights: must not all be zero")
    return DistSpec(kind, (tuple(float(v) for v in values), tuple(float(w) for w in weights)))
