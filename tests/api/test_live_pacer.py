"""The live pacer, stepped by hand with a fake wall clock: sim time follows the wall clock times
the speed, never runs ahead of it, runs due events and submitted work at the current sim time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simpy.events import Timeout

from api.live import LagStats, Pacer
from sim.cluster import scenario
from sim.cluster.cluster import Cluster

CONF = """
http {
    server {
        listen 8080;
        location / { return 200 "ok"; }
    }
}
"""


def _cluster() -> Cluster:
    sc = scenario.loads(f"nginx_conf_inline: |\n{_indent(CONF)}\nnodes: 1\nsample_interval: 1h\n")
    return Cluster(sc, start_workloads=False, sample=False)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _pacer(speed: float = 1.0, max_idle_s: float = 0.1):
    cluster = _cluster()
    pacer = Pacer(cluster, speed, max_idle_s=max_idle_s)
    clock = FakeClock()
    pacer.begin(clock)
    return cluster, pacer, clock


def test_sim_time_is_the_wall_clock_times_the_speed():
    cluster, pacer, clock = _pacer(speed=4.0)
    clock.t += 0.25
    pacer.step(clock.t)
    assert cluster.env.now == pytest.approx(1000.0)
    assert pacer.target() == pytest.approx(1000.0)


def test_events_due_run_and_later_ones_wait():
    cluster, pacer, clock = _pacer()
    fired = []
    for at in (30.0, 70.0):
        ev = Timeout(cluster.env, at)
        ev.callbacks.append(lambda _e, at=at: fired.append((at, cluster.env.now)))
    clock.t += 0.050
    pacer.step(clock.t)
    assert fired == [(30.0, 30.0)]
    assert cluster.env.now == pytest.approx(50.0)


def test_the_pacer_sleeps_until_the_next_event_and_no_longer_than_max_idle():
    cluster, pacer, clock = _pacer(speed=2.0, max_idle_s=0.5)
    Timeout(cluster.env, 300.0)
    assert pacer.step(clock.t) == pytest.approx(0.150)  # 300 sim ms at 2x
    clock.t += 0.2
    pacer.step(clock.t)  # the event ran; nothing else is scheduled
    assert pacer.step(clock.t) == pytest.approx(0.5)


def test_submitted_work_runs_at_the_sim_time_the_wall_clock_reached():
    cluster, pacer, clock = _pacer()
    seen = []
    clock.t += 0.010
    pacer.submit(lambda: seen.append(cluster.env.now))
    clock.t += 0.005  # the pacer wakes 5 ms later
    assert seen == []
    assert pacer.step(clock.t) > 0
    assert seen == [pytest.approx(15.0)]
    assert pacer.inject_delay.summary()["max_ms"] == pytest.approx(5.0)


def test_work_submitted_during_a_step_makes_the_pacer_go_on_at_once():
    cluster, pacer, clock = _pacer()
    pacer.submit(lambda: pacer.submit(lambda: None))
    assert pacer.step(clock.t) == 0.0


def test_lag_is_how_late_each_due_event_ran_in_wall_time():
    cluster, pacer, clock = _pacer(speed=2.0)
    Timeout(cluster.env, 100.0)
    clock.t += 0.060  # sim 120 ms: the event due at 100 ms runs 20 sim ms = 10 wall ms late
    pacer.step(clock.t)
    assert pacer.lag.summary()["max_ms"] == pytest.approx(10.0)
    assert pacer.lag.count == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=30),
       st.sampled_from([0.5, 1.0, 10.0]))
def test_sim_time_never_runs_ahead_of_the_wall_clock(gaps, speed):
    cluster, pacer, clock = _pacer(speed=speed)
    reached = 0.0
    for gap in gaps:
        clock.t += gap
        pacer.step(clock.t)
        reached = max(reached, (clock.t - 100.0) * 1000.0 * speed)
        assert cluster.env.now <= pacer.target() + 1e-9
        assert cluster.env.now == pytest.approx(reached)


def test_lag_percentiles_come_from_the_window():
    stats = LagStats(window=100)
    for ms in range(1, 101):
        stats.add(float(ms))
    s = stats.summary()
    assert (s["count"], s["p50_ms"], s["p99_ms"], s["max_ms"]) == (100, 51.0, 100.0, 100.0)
    stats.reset()
    assert stats.summary() == {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": 0.0}


def test_speed_must_be_positive():
    with pytest.raises(ValueError, match="speed"):
        Pacer(_cluster(), 0.0)
