"""Named random streams split from one root seed.

Every consumer of randomness asks for a stream by name (``"node1/upstream/backend/lb"``). A
stream's sequence depends only on the root seed and its name, never on the order in which
streams are created or on how much another stream consumed, so adding a workload does not
change what an unrelated backend draws. There is no global RNG anywhere in the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from itertools import chain, repeat
from operator import methodcaller
from typing import Any

import numpy as np


class Streams:
    """A factory of independent ``numpy.random.Generator`` streams keyed by name."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        """The stream called ``name`` (created on first use, the same object afterwards)."""
        gen = self._streams.get(name)
        if gen is None:
            digest = hashlib.sha256(name.encode()).digest()
            key = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, *key])))
            self._streams[name] = gen
        return gen

    def names(self) -> list[str]:
        return sorted(self._streams)


def Batched(draw: Callable[[int], Any], size: int = 4096) -> Callable[[], Any]:  # named like a class: one is built per use, then called
    """Draws from a distribution in numpy batches and hands them out one at a time.

    The hot path needs one number per request; asking numpy for one scalar at a time costs
    far more than the draw itself, so values are produced ``size`` at a time: ``draw(size)``
    (an ndarray) is converted to a list of Python numbers when the previous batch runs out.
    The result is a zero-argument callable returning the next value.
    """
    # a chain of lazily drawn batches, handed out by the chain's own ``__next__``: every
    # call stays in C (no Python frame per value), and a batch is still drawn only on the
    # call that needs it, so the draws from a shared generator keep their order
    batches = map(methodcaller("tolist"), map(draw, repeat(size)))
    return chain.from_iterable(batches).__next__


class Draws:
    """Like :func:`Batched`, as an object whose :meth:`next` returns the next value: the form for
    the compiled hot path (``docs/performance.md``), where calling ``next`` is a direct C call.

    ``draw(size)`` must return a numpy array; its values are handed out in order, a new batch
    drawn when the previous one runs out (so the values are the ones :func:`Batched` gives).
    :meth:`next` returns a float, :meth:`next_int` the same value as an int (for draws of
    integers, such as indexes).
    """

    def __init__(self, draw: Callable[[int], Any], size: int = 4096) -> None:
        self.draw = draw
        self.size = size
        self.values: list[Any] = []
        self.i = 0

    def _refill(self) -> list[Any]:
        values: list[Any] = self.draw(self.size).tolist()
        self.values = values
        self.i = 0
        return values

    def _take(self) -> Any:
        i = self.i
        values = self.values
        if i >= len(values):
            values = self._refill()
            i = 0
        self.i = i + 1
        return values[i]

    def next(self) -> float:
        v: float = self._take()
        return v

    def next_int(self) -> int:
        v: int = self._take()
        return v
