"""The event queue's fast lane: the model's own per-request events, kept out of simpy's heap.

simpy keeps every scheduled event in one binary heap of ``(time, priority, id, event)`` tuples,
and CPython compares two such tuples element by element through generic comparisons: a few
hundred machine instructions per comparison, a handful of comparisons per event. The events
that every simulated request makes (an arrival, the delivery of its response, a backend slot's
release) are instead :class:`FastEvent` objects in a :class:`FastQueue`, a heap of its own
whose entries carry their time and id as plain fields and are compared directly. Each fast
event takes its id from simpy's own counter, and :func:`step` always runs whichever head of the
two heaps comes first by ``(time, priority, id)``, so the events run in exactly the order one
simpy heap would give them: results do not depend on which lane an event took.

A fast event does its work in :meth:`FastEvent.fire` (a direct call, where simpy would iterate
the event's callback list); the generic :class:`FastEvent` runs a simpy-style callback list.
:class:`sim.core.environment.Environment` is the simpy environment that owns a fast lane; with a plain
``simpy.Environment``, :func:`later` and :func:`push` fall back to simpy's own heap.

This module is compiled with the hot path (``docs/performance.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush
from typing import Any

import simpy
from simpy.core import EmptySchedule
from simpy.events import NORMAL

#: simpy's step, for events in simpy's own heap (it pops the same head this module saw).
_simpy_step = simpy.Environment.step


class FastEvent:
    """An event in the fast lane: its due time ``t`` and queue id ``eid`` once scheduled.

    As a plain simpy event (on an environment without a fast lane) it carries what simpy's
    ``step`` reads, ``callbacks`` and ``_ok``; ``_value`` is what a callback finds in it, as in
    a ``simpy.Timeout``. Subclasses do their work in :meth:`fire` directly.
    """

    def __init__(self, callbacks: list[Any] | None = None, value: Any = None) -> None:
        self.t = 0.0
        self.eid = 0
        self.callbacks = callbacks
        self._value = value
        self._ok = True

    def fire(self) -> None:
        """Run the callbacks, each given this event, as simpy would (and mark it processed)."""
        callbacks = self.callbacks
        self.callbacks = None
        if callbacks is not None:
            for callback in callbacks:
                callback(self)


def _fire(event: FastEvent) -> None:
    event.fire()


#: the callback list of a fast event queued in simpy's heap: simpy only iterates it
_FIRE: list[Any] = [_fire]


class FastQueue:
    """The fast lane of one environment: a binary heap ordered by ``(t, eid)``; every fast
    event has simpy's NORMAL priority. ``now`` mirrors the environment's clock (kept by
    :func:`step`), so the model reads the time as a plain field."""

    def __init__(self, env: Any) -> None:
        self.heap: list[FastEvent] = []
        self.now = float(env._now)
        self.eids: Any = env._eid  # simpy's id counter, shared: one order for both heaps

    def push(self, event: FastEvent, delay: float) -> None:
        """Queue ``event`` ``delay`` ms from now."""
        t = self.now + delay
        eid: int = next(self.eids)
        event.t = t
        event.eid = eid
        heap = self.heap
        pos = len(heap)
        heap.append(event)
        while pos > 0:
            up = (pos - 1) >> 1
            parent = heap[up]
            if t < parent.t or (t == parent.t and eid < parent.eid):
                heap[pos] = parent
                pos = up
            else:
                break
        heap[pos] = event

    def pop(self) -> FastEvent:
        """Remove and return the first event (the heap must not be empty)."""
        heap = self.heap
        last = heap.pop()
        if not heap:
            return last
        first = heap[0]
        n = len(heap)
        t = last.t
        eid = last.eid
        pos = 0
        child = 1
        while child < n:
            c = heap[child]
            right = child + 1
            if right < n:
                r = heap[right]
                if r.t < c.t or (r.t == c.t and r.eid < c.eid):
                    child = right
                    c = r
            if c.t < t or (c.t == t and c.eid < eid):
                heap[pos] = c
                pos = child
                child = 2 * pos + 1
            else:
                break
        heap[pos] = last
        return first


def _simpy_first(q: list[Any], f: FastEvent) -> bool:
    """Whether simpy's head entry ``q[0]`` comes before the fast lane's head ``f``."""
    entry = q[0]
    t: float = entry[0]
    if t != f.t:
        return t < f.t
    priority: int = entry[1]
    if priority != NORMAL:
        return priority < NORMAL
    eid: int = entry[2]
    return eid < f.eid


def step(env: Any, fq: FastQueue) -> None:
    """Process the next event of either heap, as ``simpy.Environment.step`` does for one
    (raising ``EmptySchedule`` when both are empty)."""
    q: list[Any] = env._queue
    heap = fq.heap
    if heap and not (q and _simpy_first(q, heap[0])):
        f = fq.pop()
        env._now = f.t
        fq.now = f.t
        f.fire()
        return
    if not q:
        raise EmptySchedule()
    t: float = q[0][0]
    fq.now = t
    _simpy_step(env)


def run(env: Any, fq: FastQueue) -> None:
    """Process events until one raises (simpy's ``StopSimulation`` at the end of a run, or
    ``EmptySchedule``): what simpy's run loop does, with each step a C call."""
    while True:
        step(env, fq)


def peek(env: Any, fq: FastQueue) -> float:
    """The time of the next event of either heap (infinity when there is none)."""
    q: list[Any] = env._queue
    heap = fq.heap
    if heap:
        t = heap[0].t
        if q:
            s: float = q[0][0]
            return s if s < t else t
        return t
    if q:
        s2: float = q[0][0]
        return s2
    return float("inf")


def push(env: Any, fq: FastQueue | None, event: FastEvent, delay: float) -> None:
    """Queue ``event`` in the fast lane ``fq``, or, without one, in simpy's heap (the same place
    in the order), with a callback list that makes simpy call its :meth:`~FastEvent.fire`."""
    if fq is not None:
        fq.push(event, delay)
        return
    if event.callbacks is None or type(event) is not FastEvent:
        event.callbacks = _FIRE
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), event))


def later(env: Any, delay: float, callback: Callable[[Any], Any], value: Any = None) -> FastEvent:
    """``callback(event)`` ``delay`` ms from now, with ``event._value`` = ``value``: what a
    ``simpy.Timeout`` with that callback does, in the fast lane when ``env`` has one."""
    event = FastEvent([callback], value)
    push(env, getattr(env, "fast", None), event, delay)
    return event
