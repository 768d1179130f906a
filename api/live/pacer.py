"""The pacer: the one task that advances the simulated cluster in step with the wall clock.

:class:`Pacer` moves the simpy environment to the sim time the loop's clock (times a speed
factor) has reached, runs work handed to it at the current sim time, and keeps lag samples in
:class:`LagStats` windows for the control endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LagStats:
    """A bounded window of lag samples (ms) with percentiles."""

    def __init__(self, window: int = 50_000):
        self.samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.samples.append(ms)
        self.count += 1
        if ms > self.max:
            self.max = ms

    def reset(self) -> None:
        self.samples.clear()
        self.count = 0
        self.max = 0.0

    def summary(self) -> dict:
        s = sorted(self.samples)
        n = len(s)

        def q(p: float) -> float | None:
            return round(s[min(n - 1, int(p * n))], 3) if n else None

        return {"count": self.count, "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(self.max, 3)}


class Pacer:
    """Advances ``cluster`` to the sim time the wall clock has reached, times ``speed``.

    The only code that advances the model in live mode. Work that must happen at the current
    sim time (a request arriving) is handed over with :meth:`submit`; the pacer wakes at once,
    advances the clock to now and runs it. Work that holds the loop for a while (an API
    request) calls :meth:`catch_up` first, so that events due meanwhile do not wait behind it.

    ``lag`` records, for every simulated event, how late (wall ms) it ran behind the wall
    clock; ``step_lag``, for every step that had events due, how late the oldest of them ran
    (fewer samples: a step that catches up a backlog counts once); ``inject_delay`` how long
    submitted work waited for the pacer. docs/live.md says where lag comes from.
    """

    def __init__(self, cluster, speed: float = 1.0, *, max_idle_s: float = 0.1):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.cluster = cluster
        self.env = cluster.env
        self.speed = float(speed)
        self.max_idle_s = max_idle_s
        self.ms_per_s = 1000.0 * self.speed
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clock = time.monotonic
        self.wall0 = 0.0
        self.sim0 = 0.0
        self.steps = 0
        self.lag = LagStats(200_000)
        self.step_lag = LagStats()
        self.inject_delay = LagStats()
        self.after_step: list = []
        self._pending: list[tuple[float, object, tuple]] = []
        self._waiter: asyncio.Future | None = None
        self._stopping = False
        self._stepping = False
        self._begun = False

    def target(self, wall: float | None = None) -> float:
        """The sim time (ms) the wall clock has reached."""
        if wall is None:
            wall = self.clock()
        return self.sim0 + (wall - self.wall0) * self.ms_per_s

    def submit(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the pacer, at the current sim time, as soon as possible."""
        self._pending.append((self.clock(), fn, args))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def stats(self) -> dict:
        return {
            "speed": self.speed,
            "sim_ms": round(self.env.now, 3),
            "target_ms": round(self.target(), 3),
            "steps": self.steps,
            "lag": self.lag.summary(),
            "step_lag": self.step_lag.summary(),
            "inject_delay": self.inject_delay.summary(),
        }

    def reset_stats(self) -> None:
        self.lag.reset()
        self.step_lag.reset()
        self.inject_delay.reset()

    def begin(self, clock=None) -> None:
        """Start the wall clock: now is the current sim time. ``clock`` (seconds) defaults to the
        running loop's; tests pass their own and call :meth:`step`."""
        if clock is None:
            self.loop = asyncio.get_running_loop()
            clock = self.loop.time
        self.clock = clock
        self.wall0 = clock()
        self.sim0 = self.env.now
        self._begun = True

    def step(self, now: float) -> float:
        """One step at wall time ``now`` (loop seconds): advance the model to the sim time the wall
        clock has reached, run the submitted work there, and return how long (seconds after
        ``now``) the pacer may sleep before the next simulated event is due (0: go on at once)."""
        env = self.env
        target = self.sim0 + (now - self.wall0) * self.ms_per_s
        self._stepping = True
        try:
            nxt = env.peek()
            if nxt <= target:
                due = nxt if nxt > env.now else env.now
                self.step_lag.add((target - due) / self.speed)
                self._run_due(target)
            if target > env.now:
                self.cluster.run(target)  # nothing is due any more: this only moves the clock
                if env.peek() == env.now:
                    # simpy re-queues its own "until" marker at env.now after every run (without
                    # callbacks); drop it so the next wake-up is the next real event
                    env.step()
            self.steps += 1
            if self._pending:
                pending, self._pending = self._pending, []
                for t_in, fn, args in pending:
                    self.inject_delay.add((now - t_in) * 1000.0 if now > t_in else 0.0)
                    fn(*args)
            for hook in self.after_step:
                hook()
        finally:
            self._stepping = False
        if self._pending:
            return 0.0
        nxt = env.peek()
        if nxt == float("inf"):
            return self.max_idle_s
        return min(self.max_idle_s, self.wall0 + (nxt - self.sim0) / self.ms_per_s - now)

    def _run_due(self, target: float) -> None:
        """Run every event due by ``target``, one at a time, recording how late each one ran."""
        env = self.env
        peek, step, add = env.peek, env.step, self.lag.add
        clock, wall0, sim0, ms_per_s, speed = self.clock, self.wall0, self.sim0, self.ms_per_s, self.speed
        while True:
            t = peek()
            if t > target:
                return
            if t < env.now:
                t = env.now
            late = sim0 + (clock() - wall0) * ms_per_s - t
            add(late / speed if late > 0.0 else 0.0)
            step()

    def catch_up(self) -> None:
        """Run what is due now, before work that holds the loop (an API request).

        The pacer task wakes on a timer or when work is submitted, but it runs only when the loop
        gets to it, after whatever else is ready; an API request takes a few hundred
        microseconds, and several in a row would make simulated events late. The task is woken
        afterwards to plan its next sleep from the new state of the model.
        """
        if self._stepping or self._stopping or not self._begun:
            return
        now = self.clock()
        if self._pending or self.env.peek() <= self.sim0 + (now - self.wall0) * self.ms_per_s:
            self.step(now)
            self.wake()

    async def run(self) -> None:
        if self.loop is None:
            self.begin()
        loop = self.loop
        while not self._stopping:
            now = loop.time()
            delay = self.step(now) - (loop.time() - now)
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            waiter = self._waiter = loop.create_future()
            handle = loop.call_later(delay, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)

