"""The simulation environment: a ``simpy.Environment`` with the model's fast lane.

Everything simpy offers works unchanged (``Timeout``, processes, ``run(until=...)``, ``peek``,
``step``). In addition, ``env.fast`` is a :class:`sim.core.eventq.FastQueue` where the model queues
its per-request events; ``step`` and ``peek`` consider both heaps, and ``run`` processes events
in a compiled loop instead of calling ``step`` once per event. The order of events is the order
a single simpy heap would give (see :mod:`sim.core.eventq`).
"""

from __future__ import annotations

import simpy

from sim.core import eventq


class Environment(simpy.Environment):
    """simpy's environment plus a fast lane (``fast``) for the model's own events."""

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.fast = eventq.FastQueue(self)
        self._in_run = False

    def peek(self) -> float:
        return eventq.peek(self, self.fast)

    def step(self) -> None:
        if self._in_run:
            # called from simpy's run loop: process events until one ends the run (simpy's
            # loop stops on the StopSimulation or EmptySchedule this raises, as after one step)
            eventq.run(self, self.fast)
        else:
            eventq.step(self, self.fast)

    def run(self, until=None):
        outer = self._in_run
        self._in_run = True
        try:
            return super().run(until)
        finally:
            self._in_run = outer
