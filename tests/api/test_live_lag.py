"""How the live pacer measures lag and catches up, and how the live HTTP server writes a response.

The pacer is stepped by hand with a fake wall clock (as in test_live_pacer.py): ``lag`` counts
every simulated event, ``step_lag`` one sample per step; :meth:`Pacer.catch_up` runs what is due
before work that holds the loop, and never from inside a step. A response goes out in one write
unless its body is large.
"""

from __future__ import annotations

import pytest
from simpy.events import Timeout

from api.live import Pacer
from api.live.http import HttpConnection, HttpRequest
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
    conf = "\n".join("  " + line for line in CONF.splitlines())
    sc = scenario.loads(f"nginx_conf_inline: |\n{conf}\nnodes: 1\nsample_interval: 1h\n")
    return Cluster(sc, start_workloads=False, sample=False)


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _pacer(speed: float = 1.0):
    cluster = _cluster()
    pacer = Pacer(cluster, speed)
    clock = FakeClock()
    pacer.begin(clock)
    return cluster, pacer, clock


def _events_at(cluster, *times: float) -> list:
    fired = []
    for at in times:
        Timeout(cluster.env, at).callbacks.append(lambda _e, at=at: fired.append((at, cluster.env.now)))
    return fired


# --------------------------------------------------------------------------------------------------
# Lag


def test_lag_counts_every_due_event_and_step_lag_only_the_oldest_of_each_step():
    cluster, pacer, clock = _pacer(speed=2.0)
    fired = _events_at(cluster, 100.0, 110.0)
    clock.t += 0.060  # sim 120 ms: 20 and 10 sim ms late, 10 and 5 wall ms
    pacer.step(clock.t)
    assert fired == [(100.0, 100.0), (110.0, 110.0)]
    assert sorted(pacer.lag.samples) == pytest.approx([5.0, 10.0])
    assert list(pacer.step_lag.samples) == pytest.approx([10.0])
    assert cluster.env.now == pytest.approx(120.0)


def test_an_event_is_as_late_as_the_wall_clock_when_it_runs():
    cluster, pacer, clock = _pacer()
    first = Timeout(cluster.env, 10.0)
    first.callbacks.append(lambda _e: setattr(clock, "t", clock.t + 0.004))  # this event takes 4 ms
    _events_at(cluster, 12.0)
    clock.t += 0.015
    pacer.step(clock.t)
    assert sorted(pacer.lag.samples) == pytest.approx([5.0, 7.0])  # due at 10, run at 15; due at 12, run at 19


def test_resetting_the_statistics_clears_every_lag_window():
    cluster, pacer, clock = _pacer()
    _events_at(cluster, 1.0)
    pacer.submit(lambda: None)
    clock.t += 0.005
    pacer.step(clock.t)
    assert (pacer.lag.count, pacer.step_lag.count, pacer.inject_delay.count) == (1, 1, 1)
    pacer.reset_stats()
    assert (pacer.lag.count, pacer.step_lag.count, pacer.inject_delay.count) == (0, 0, 0)
    assert pacer.stats()["step_lag"] == {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": 0.0}


# --------------------------------------------------------------------------------------------------
# Catching up


def test_catch_up_runs_due_events_and_submitted_work_at_the_wall_clock_time():
    cluster, pacer, clock = _pacer()
    fired = _events_at(cluster, 30.0, 70.0)
    seen = []
    pacer.submit(lambda: seen.append(cluster.env.now))
    clock.t += 0.050
    pacer.catch_up()
    assert fired == [(30.0, 30.0)]
    assert seen == [pytest.approx(50.0)]
    assert pacer.steps == 1


def test_catch_up_does_nothing_when_nothing_is_due():
    cluster, pacer, clock = _pacer()
    _events_at(cluster, 30.0)
    clock.t += 0.020
    pacer.catch_up()
    assert (pacer.steps, cluster.env.now) == (0, 0.0)


def test_catch_up_from_inside_a_step_does_not_step_again():
    cluster, pacer, clock = _pacer()
    _events_at(cluster, 30.0)
    clock.t += 0.050
    pacer.submit(pacer.catch_up)
    pacer.step(clock.t)
    assert pacer.steps == 1


def test_catch_up_before_the_pacer_began_does_nothing():
    cluster = _cluster()
    pacer = Pacer(cluster)
    _events_at(cluster, 30.0)
    pacer.catch_up()
    assert (pacer.steps, cluster.env.now) == (0, 0.0)


# --------------------------------------------------------------------------------------------------
# Writing a response


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        pass


def _connection():
    proto = HttpConnection(handler=None)
    proto.transport = FakeTransport()
    proto.busy = True
    return proto


def test_a_response_with_a_small_body_goes_out_in_one_write():
    proto = _connection()
    proto.respond(200, [("Content-Type", "text/plain")], b"hello")
    [data] = proto.transport.writes
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 5\r\n" in head + b"\r\n"
    assert body == b"hello"


def test_a_simulated_body_goes_out_in_one_write_up_to_64k_and_in_pieces_beyond():
    proto = _connection()
    proto.respond(200, [], None, length=1000)
    [data] = proto.transport.writes
    assert data.split(b"\r\n\r\n", 1)[1] == b"x" * 1000
    proto = _connection()
    proto.respond(200, [], None, length=150_000)
    writes = proto.transport.writes
    assert len(writes) == 4  # the head, then 64k + 64k + 20464 bytes
    assert b"Content-Length: 150000\r\n" in writes[0]
    assert sum(len(w) for w in writes[1:]) == 150_000


def test_a_large_body_follows_its_head_in_a_second_write():
    proto = _connection()
    body = bytes(range(256)) * 400  # 102400 bytes
    proto.respond(200, [], body)
    assert len(proto.transport.writes) == 2
    assert proto.transport.writes[1] == body


def test_a_head_request_gets_no_body():
    proto = _connection()

    proto.current = HttpRequest("HEAD", "/", "HTTP/1.1", [], True)
    proto.respond(200, [], b"hello")
    [data] = proto.transport.writes
    assert data.endswith(b"\r\n\r\n")
    assert b"Content-Length: 5\r\n" in data
