"""The fast lane (sim/core/eventq.py, sim/core/environment.py): events in it run in exactly the order one
simpy heap would give them, and everything simpy offers keeps working around it."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from simpy.core import EmptySchedule
from simpy.events import URGENT, Timeout

from sim.cluster.cluster import Cluster
from sim.core.environment import Environment
from sim.core.eventq import FastEvent, later, push

# A plan is a list of actions taken at time 0 and from inside callbacks:
# (kind, delay, children) where kind is "fast" (a fast-lane event), "timeout" (a simpy Timeout)
# or "urgent" (a simpy event scheduled with URGENT priority); children run when it fires.
delays = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.5, 3.0])
leaf = st.tuples(st.sampled_from(["fast", "timeout", "urgent"]), delays, st.just(()))
plans = st.lists(
    st.tuples(st.sampled_from(["fast", "timeout", "urgent"]), delays, st.lists(leaf, max_size=3).map(tuple)),
    min_size=1, max_size=12,
)


def _play(env, plan, fast_as_timeout: bool) -> list[tuple[str, float]]:
    """Run ``plan`` on ``env``; fast events become Timeouts when ``fast_as_timeout``."""
    log: list[tuple[str, float]] = []

    def schedule(path: str, kind: str, delay: float, children) -> None:
        def fired(_ev, path=path, children=children):
            log.append((path, env.now))
            for i, (k, d, c) in enumerate(children):
                schedule(f"{path}.{i}", k, d, c)

        if kind == "fast" and not fast_as_timeout:
            later(env, delay, fired)
        elif kind == "urgent":
            ev = simpy.Event(env)
            ev._ok, ev._value = True, None
            ev.callbacks.append(fired)
            env.schedule(ev, URGENT, delay)
        else:
            Timeout(env, delay).callbacks.append(fired)

    for i, (kind, delay, children) in enumerate(plan):
        schedule(str(i), kind, delay, children)
    return log


@settings(max_examples=150, deadline=None)
@given(plans)
def test_events_run_in_the_order_of_a_single_simpy_heap(plan):
    ref_env = simpy.Environment()
    reference = _play(ref_env, plan, fast_as_timeout=True)
    ref_env.run()
    env = Environment()
    log = _play(env, plan, fast_as_timeout=False)
    env.run()
    assert log == reference
    assert len(log) == len(plan) + sum(len(children) for _k, _d, children in plan)


@settings(max_examples=60, deadline=None)
@given(plans, st.sampled_from([0.5, 1.0, 2.0, 2.5, 4.0]))
def test_run_until_a_time_and_single_steps_agree_with_simpy(plan, until):
    ref_env = simpy.Environment()
    reference = _play(ref_env, plan, fast_as_timeout=True)
    ref_env.run(until=until)
    ref_after = list(reference)
    ref_env.run()

    env = Environment()
    log = _play(env, plan, fast_as_timeout=False)
    env.run(until=until)
    assert log == ref_after and env.now == until
    # the rest one step at a time, with peek naming each next time
    while True:
        t = env.peek()
        if t == float("inf"):
            break
        env.step()
        assert env.now == t
    assert log == reference


def test_an_empty_environment_peeks_infinity_and_refuses_to_step():
    env = Environment()
    assert env.peek() == float("inf")
    with pytest.raises(EmptySchedule):
        env.step()
    assert env.run() is None


def test_a_fast_event_runs_its_callbacks_and_the_clock_field_follows():
    # (compiled classes cannot be subclassed here; the model's own subclasses, Delivery and the
    # workload's arrival, run in every scenario test)
    env = Environment()
    seen = []
    ev = FastEvent([lambda e: seen.append((env.now, env.fast.now, e._value))], "x")
    env.fast.push(ev, 2.5)
    Timeout(env, 1.0).callbacks.append(lambda _e: seen.append(("timeout", env.now, env.fast.now)))
    env.run()
    assert seen == [("timeout", 1.0, 1.0), (2.5, 2.5, "x")]
    assert ev.callbacks is None and (ev.t, ev._ok) == (2.5, True)


def test_without_a_fast_lane_events_go_to_simpys_heap_and_still_fire():
    env = simpy.Environment()
    seen = []
    later(env, 3.0, lambda ev: seen.append((env.now, ev._value)), "job")
    push(env, None, FastEvent([lambda _e: seen.append((env.now, "pushed"))]), 1.0)
    push(env, None, FastEvent(), 2.0)  # no callbacks: fires as a no-op
    env.run()
    assert seen == [(1.0, "pushed"), (3.0, "job")]
    assert env.now == 3.0


def test_a_failed_simpy_event_still_crashes_the_run():
    env = Environment()
    ev = simpy.Event(env)
    later(env, 1.0, lambda _e: ev.fail(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        env.run()


def test_a_run_can_stop_at_an_event_and_resume():
    env = Environment()
    stop = Timeout(env, 2.0, value="stopped")
    seen = []
    for t in (1.0, 2.0, 3.0):
        later(env, t, lambda _e: seen.append(env.now))
    assert env.run(until=stop) == "stopped"
    assert seen == [1.0] and env.now == 2.0  # the fast event at 2.0 was queued after the stop
    env.run()
    assert seen == [1.0, 2.0, 3.0]


def test_the_cluster_needs_the_environment_with_a_fast_lane(tmp_path):
    from sim.cluster import scenario as scenario_mod

    conf = tmp_path / "n.conf"
    conf.write_text("http { server { listen 80; location / { return 200; } } }\n")
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(f"name: t\nnginx_conf: {conf.name}\nnodes: 1\nduration: 1s\n")
    sc = scenario_mod.load(sc_file)
    with pytest.raises(TypeError, match="fast lane"):
        Cluster(sc, env=simpy.Environment())
    assert isinstance(Cluster(sc).env, Environment)


def test_ids_are_shared_so_equal_times_keep_scheduling_order():
    env = Environment()
    order = []
    later(env, 1.0, lambda _e: order.append("fast-1"))
    Timeout(env, 1.0).callbacks.append(lambda _e: order.append("simpy-2"))
    later(env, 1.0, lambda _e: order.append("fast-3"))
    ev = simpy.Event(env)
    ev._ok, ev._value = True, None
    ev.callbacks.append(lambda _e: order.append("urgent-4"))
    env.schedule(ev, URGENT, 1.0)
    env.run()
    assert order == ["urgent-4", "fast-1", "simpy-2", "fast-3"]
