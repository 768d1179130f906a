"""Active health checks (sim/upstream/health.py): timing, verdicts, counters, match tests, stream checks.

Every world here has 1 ms one-way links with infinite bandwidth and backends whose health
endpoint answers in 4 ms, so an http check takes 2 (connect) + 1 (request) + 4 + 1 (answer)
= 8 ms, a refused one 2 ms, and the next check of a peer starts ``interval`` after that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import simpy
from simpy.events import Timeout

from sim.cluster.backend import Backend, BackendSpec
from sim.cluster.network import LinkSpec, Network
from sim.conf.config import HeaderTest, HealthCheckConf, MatchConf, ServerConf, StatusTest, UpstreamConf
from sim.core.dists import DistSpec
from sim.core.rng import Streams
from sim.upstream.health import HealthChecker, HealthRegistry, http_response_passes, stream_data_passes
from sim.upstream.upstream import Upstream

NODE = "node1"


@dataclass
class World:
    env: simpy.Environment
    streams: Streams
    network: Network
    backends: dict
    upstream: Upstream
    seen: list  # (time, address) of every backend lookup a check made

    def backend_of(self, address, name=None):
        self.seen.append((self.env.now, address))
        return self.backends.get(address)

    def at(self, t, action):
        Timeout(self.env, t - self.env.now).callbacks.append(lambda _ev: action())

    def checker(self, hc, match=None, *, connect=1000, read=1000, kind=None, stream_timeout=5000, upstream=None):
        up = upstream or self.upstream
        return HealthChecker(
            self.env,
            NODE,
            up,
            hc,
            match,
            self.backend_of,
            self.network,
            self.streams.get(f"{NODE}/health/{up.name}"),
            connect,
            read,
            kind=kind,
            stream_timeout_ms=stream_timeout,
        )

    def peer(self, i=0):
        return self.upstream.peers[i]


def server(address):
    host, _, port = address.rpartition(":")
    return ServerConf(address=address, host=host, port=int(port))


def make_world(servers=("10.0.0.1:80",), backends=None, kind="http", seed=1, **spec):
    env = simpy.Environment()
    streams = Streams(seed)
    network = Network(streams, LinkSpec(latency_ms=1.0, bandwidth_bytes_per_ms=math.inf))
    backends = servers if backends is None else backends
    bks = {
        a: Backend(env, BackendSpec(a, health_time=DistSpec("constant", (4.0,)), **spec), streams) for a in backends
    }
    conf = UpstreamConf(name="backend", kind=kind, servers=tuple(server(a) for a in servers), zone="backend")
    up = Upstream(env, conf, streams.get(f"{NODE}/upstream/backend/lb"))
    return World(env, streams, network, bks, up, [])


def run(w, t):
    w.env.run(until=t)


# ---------------------------------------------------------------------------------------------
# fails / passes


def test_peer_becomes_unhealthy_at_the_third_failed_check_after_backend_goes_down():
    w = make_world()
    w.checker(HealthCheckConf(interval_ms=5000, fails=3, passes=2)).start()
    w.at(10_000, lambda: w.backends["10.0.0.1:80"].set_state("down"))
    peer = w.peer()
    # checks: 0->8 pass, 5008->5016 pass, 10016->10018 refused, 15018->15020, 20020->20022
    run(w, 20_022)
    assert peer.state == "up"
    assert (peer.hc_checks, peer.hc_fails, peer.hc_unhealthy) == (4, 2, 0)
    run(w, 20_022.5)
    assert peer.state == "unhealthy"
    assert peer.downstart_at(w.env.now) == 20_022
    assert (peer.hc_checks, peer.hc_fails, peer.hc_unhealthy) == (5, 3, 1)
    assert peer.hc_last_passed is False


def test_unhealthy_peer_returns_up_after_passes_consecutive_passed_checks():
    w = make_world()
    w.checker(HealthCheckConf(interval_ms=5000, fails=3, passes=2)).start()
    backend = w.backends["10.0.0.1:80"]
    w.at(10_000, lambda: backend.set_state("down"))
    w.at(30_000, lambda: backend.set_state("up"))
    peer = w.peer()
    # 25022->25024 refused; 30024->30032 pass; 35032->35040 pass: up again
    run(w, 35_040)
    assert peer.state == "unhealthy"
    assert peer.hc_last_passed is True
    run(w, 35_040.5)
    assert peer.state == "up"
    assert peer.downstart_at(w.env.now) is None
    assert peer.downtime_at(w.env.now) == 35_040 - 20_022
    assert (peer.hc_checks, peer.hc_fails, peer.hc_unhealthy) == (8, 4, 1)


def test_a_pass_between_failures_restarts_the_count_of_consecutive_fails():
    w = make_world()
    w.checker(HealthCheckConf(interval_ms=1000, fails=2)).start()
    backend = w.backends["10.0.0.1:80"]
    # 0->8 pass; 1008->1010 fail; 2010->2018 pass; 3018->3020 fail; 4020->4022 fail -> unhealthy
    w.at(1000, lambda: backend.set_state("down"))
    w.at(2000, lambda: backend.set_state("up"))
    w.at(3000, lambda: backend.set_state("down"))
    peer = w.peer()
    run(w, 4022)
    assert peer.state == "up"
    assert peer.hc_fails == 2
    run(w, 4022.5)
    assert peer.state == "unhealthy"


def test_checks_of_one_peer_start_interval_after_the_previous_completes():
    w = make_world()
    w.checker(HealthCheckConf(interval_ms=5000)).start()
    run(w, 15_100)
    # the lookup happens when the connection is established, 2 ms after a check starts
    assert [t for t, _ in w.seen] == [2, 5010, 10_018, 15_026]


# ---------------------------------------------------------------------------------------------
# mandatory and persistent


def test_mandatory_peer_is_checking_until_its_first_check_completes():
    w = make_world()
    w.checker(HealthCheckConf(mandatory=True)).start()
    peer = w.peer()
    assert peer.state == "checking"
    assert peer.downstart_at(0) == 0
    run(w, 8)
    assert peer.state == "checking"
    run(w, 8.5)
    assert peer.state == "up"
    assert peer.downtime_at(w.env.now) == 8
    assert peer.hc_unhealthy == 0


def test_mandatory_first_failed_check_makes_peer_unhealthy_whatever_fails_says():
    w = make_world()
    w.backends["10.0.0.1:80"].set_state("down")
    w.checker(HealthCheckConf(mandatory=True, fails=3)).start()
    peer = w.peer()
    run(w, 2.5)
    assert peer.state == "unhealthy"
    assert (peer.hc_checks, peer.hc_fails, peer.hc_unhealthy) == (1, 1, 1)
    assert peer.downstart_at(w.env.now) == 0  # the down period began with "checking"


def test_mandatory_server_added_at_run_time_stays_checking_until_its_first_check():
    w = make_world(backends=("10.0.0.1:80", "10.0.0.2:80"))
    checker = w.checker(HealthCheckConf(mandatory=True))
    checker.start()

    def add():
        checker.on_server_added(w.upstream.add_server({"server": "10.0.0.2:80"}, has_resolver=False))

    w.at(2000, add)
    run(w, 2008)
    new = w.peer(1)
    assert new.state == "checking"
    assert new.downstart_at(w.env.now) == 2000
    run(w, 2008.5)
    assert new.state == "up"
    assert new.hc_checks == 1


def test_server_added_without_mandatory_starts_up_and_is_checked_at_once():
    w = make_world(backends=("10.0.0.1:80", "10.0.0.2:80"))
    checker = w.checker(HealthCheckConf())
    checker.start()
    added = []

    def add():
        peer = w.upstream.add_server({"server": "10.0.0.2:80"}, has_resolver=False)
        checker.on_server_added(peer)
        added.append(peer.state)

    w.at(2000, add)
    run(w, 2100)
    assert added == ["up"]
    assert (w.peer(1).hc_checks, w.peer(1).hc_last_passed) == (1, True)
    assert (2002, "10.0.0.2:80") in w.seen


def test_mandatory_persistent_keeps_healthy_peers_up_after_reload():
    w = make_world(servers=("10.0.0.1:80", "10.0.0.2:80"))
    w.backends["10.0.0.2:80"].set_state("down")
    hc = HealthCheckConf(mandatory=True, persistent=True)
    old = w.checker(hc)
    old.start()
    run(w, 100)
    assert [p.state for p in w.upstream.peers] == ["up", "unhealthy"]
    previous = old.stop()
    assert previous == {"10.0.0.1:80": True, "10.0.0.2:80": False}
    reloaded = Upstream(w.env, w.upstream.conf, w.streams.get("reloaded"))
    w.checker(hc, upstream=reloaded).start(previous)
    assert [p.state for p in reloaded.peers] == ["up", "checking"]


def test_mandatory_without_persistent_rechecks_every_peer_after_reload():
    w = make_world(servers=("10.0.0.1:80", "10.0.0.2:80"), backends=("10.0.0.1:80",))
    hc = HealthCheckConf(mandatory=True)
    old = w.checker(hc)
    old.start()
    run(w, 100)
    previous = old.stop()
    reloaded = Upstream(w.env, w.upstream.conf, w.streams.get("reloaded"))
    w.checker(hc, upstream=reloaded).start(previous)
    assert [p.state for p in reloaded.peers] == ["checking", "checking"]


# ---------------------------------------------------------------------------------------------
# the network and slow backends


def test_cut_link_fails_the_check_when_the_connect_timeout_expires():
    w = make_world()
    w.checker(HealthCheckConf(interval_ms=5000), connect=1000).start()
    w.at(3000, lambda: w.network.cut(NODE, "10.0.0.1:80"))
    peer = w.peer()
    run(w, 6008)  # the check that starts at 5008 never connects
    assert (peer.hc_checks, peer.state) == (1, "up")
    run(w, 6008.5)
    assert (peer.hc_checks, peer.hc_fails, peer.state) == (2, 1, "unhealthy")
    assert peer.downstart_at(w.env.now) == 6008


def test_backend_missing_from_the_world_fails_by_connect_timeout():
    w = make_world(backends=())
    w.checker(HealthCheckConf(), connect=700).start()
    run(w, 700)
    assert w.peer().hc_checks == 0
    run(w, 700.5)
    assert (w.peer().hc_fails, w.peer().state) == (1, "unhealthy")


def test_slow_backend_whose_answer_exceeds_read_timeout_fails_at_the_timeout():
    w = make_world()
    w.checker(HealthCheckConf(interval_ms=5000), read=30).start()
    w.at(1000, lambda: w.backends["10.0.0.1:80"].set_state("slow", factor=10))
    peer = w.peer()
    # the check at 5008 connects at 5010; its answer would need 1 + 40 + 1 > 30 ms
    run(w, 5040)
    assert (peer.hc_checks, peer.hc_fails) == (1, 0)
    run(w, 5040.5)
    assert (peer.hc_checks, peer.hc_fails, peer.state) == (2, 1, "unhealthy")


def test_erroring_backend_fails_the_default_status_test():
    w = make_world()
    w.backends["10.0.0.1:80"].set_state("erroring", error_rate=1.0)
    w.checker(HealthCheckConf()).start()
    run(w, 8.5)
    assert (w.peer().hc_fails, w.peer().state) == (1, "unhealthy")


def test_port_parameter_sends_checks_to_that_port():
    w = make_world(backends=("10.0.0.1:80", "10.0.0.1:8080"))
    w.backends["10.0.0.1:80"].set_state("down")
    w.checker(HealthCheckConf(port=8080)).start()
    run(w, 8.5)
    assert w.seen == [(2, "10.0.0.1:8080")]
    assert (w.peer().hc_last_passed, w.peer().state) == (True, "up")


def test_port_without_a_listening_backend_is_refused():
    w = make_world()
    w.checker(HealthCheckConf(port=8080)).start()
    run(w, 2)
    assert w.peer().hc_checks == 0
    run(w, 2.5)
    assert (w.peer().hc_fails, w.peer().state) == (1, "unhealthy")


def test_peer_marked_down_is_not_checked():
    w = make_world()
    w.peer().down = True
    w.checker(HealthCheckConf(interval_ms=1000)).start()
    run(w, 10_000)
    assert (w.peer().hc_checks, w.seen) == (0, [])


def test_removed_peer_is_no_longer_checked():
    w = make_world(servers=("10.0.0.1:80", "10.0.0.2:80"))
    w.checker(HealthCheckConf(interval_ms=1000)).start()
    gone = w.peer(1)
    w.at(500, lambda: w.upstream.remove_server(gone.id))
    run(w, 10_000)
    assert gone.hc_checks == 1
    assert sum(1 for _, a in w.seen if a == "10.0.0.2:80") == 1


def test_stopped_checker_schedules_no_more_checks():
    w = make_world()
    checker = w.checker(HealthCheckConf(interval_ms=1000))
    checker.start()
    w.at(1012, checker.stop)  # the second check (1008->1016) is in flight: it is abandoned
    run(w, 20_000)
    assert w.peer().hc_checks == 1
    assert len(w.seen) == 2


# ---------------------------------------------------------------------------------------------
# jitter


def check_starts(seed):
    w = make_world(seed=seed)
    w.checker(HealthCheckConf(interval_ms=5000, jitter_ms=1000)).start()
    run(w, 200_000)
    return [t - 2 for t, _ in w.seen]


def test_jitter_delays_each_check_by_less_than_jitter():
    starts = check_starts(seed=1)
    assert starts[0] == 0
    extra = [b - a - 8 - 5000 for a, b in zip(starts, starts[1:], strict=False)]
    assert len(extra) >= 30
    assert all(0 <= e < 1000 for e in extra)
    assert len(set(extra)) == len(extra)
    assert max(extra) - min(extra) > 500


def test_jitter_is_reproducible_from_the_seed():
    assert check_starts(seed=7) == check_starts(seed=7)
    assert check_starts(seed=7) != check_starts(seed=8)


# ---------------------------------------------------------------------------------------------
# match


@pytest.mark.parametrize(
    ("negate", "ranges", "status", "passes"),
    [
        (False, ((200, 200),), 200, True),
        (False, ((200, 200),), 204, False),
        (False, ((200, 200), (204, 204)), 204, True),
        (False, ((200, 399),), 399, True),
        (False, ((200, 399),), 400, False),
        (False, ((301, 303), (307, 307)), 307, True),
        (True, ((500, 500),), 500, False),
        (True, ((500, 500),), 503, True),
        (True, ((400, 599),), 302, True),
        (True, ((301, 301), (302, 302)), 302, False),
    ],
)
def test_match_status_tests_ranges_and_negation(negate, ranges, status, passes):
    match = MatchConf(name="m", kind="http", status=StatusTest(negate=negate, ranges=ranges))
    assert http_response_passes(match, status, {}, "") is passes


@pytest.mark.parametrize(
    ("test", "headers", "passes"),
    [
        (HeaderTest("Content-Type", "=", "text/html"), {"content-type": "text/html"}, True),
        (HeaderTest("Content-Type", "=", "text/html"), {"Content-Type": "text/plain"}, False),
        (HeaderTest("Content-Type", "=", "text/html"), {}, False),
        (HeaderTest("Content-Type", "!=", "text/html"), {"Content-Type": "text/plain"}, True),
        (HeaderTest("Content-Type", "!=", "text/html"), {"Content-Type": "text/html"}, False),
        (HeaderTest("Content-Type", "!=", "text/html"), {}, True),
        (HeaderTest("Connection", "~", "clo"), {"Connection": "close"}, True),
        (HeaderTest("Connection", "~", "^keep"), {"Connection": "close"}, False),
        (HeaderTest("Connection", "~", "clo"), {}, False),
        (HeaderTest("Connection", "!~", "clo"), {"Connection": "close"}, False),
        (HeaderTest("Connection", "!~", "clo"), {"Connection": "keep-alive"}, True),
        (HeaderTest("Connection", "!~", "clo"), {}, True),
        (HeaderTest("Host", "exists"), {"HOST": "a"}, True),
        (HeaderTest("Host", "exists"), {}, False),
        (HeaderTest("X-Accel-Redirect", "absent"), {}, True),
        (HeaderTest("X-Accel-Redirect", "absent"), {"X-Accel-Redirect": "/x"}, False),
    ],
)
def test_match_header_operators(test, headers, passes):
    match = MatchConf(name="m", kind="http", headers=(test,))
    assert http_response_passes(match, 200, headers, "") is passes


def test_match_requires_every_header_test_to_pass():
    tests = (HeaderTest("A", "exists"), HeaderTest("B", "=", "1"))
    match = MatchConf(name="m", kind="http", headers=tests)
    assert http_response_passes(match, 200, {"A": "x", "B": "1"}, "") is True
    assert http_response_passes(match, 200, {"A": "x", "B": "2"}, "") is False


def test_match_body_regex_and_its_negation():
    found = MatchConf(name="m", kind="http", body_regex="sta[rt]+ed")
    missing = MatchConf(name="m", kind="http", body_regex="error", body_negate=True)
    assert http_response_passes(found, 200, {}, "service started") is True
    assert http_response_passes(found, 200, {}, "service stopped") is False
    assert http_response_passes(missing, 200, {}, "all good") is True
    assert http_response_passes(missing, 200, {}, "an error") is False


def test_match_body_looks_at_the_first_256k_only():
    match = MatchConf(name="m", kind="http", body_regex="MARK")
    assert http_response_passes(match, 200, {}, "x" * (256 * 1024 - 4) + "MARK") is True
    assert http_response_passes(match, 200, {}, "x" * (256 * 1024 - 3) + "MARK") is False


def test_match_without_status_test_accepts_any_status_and_without_match_only_2xx_3xx():
    assert http_response_passes(MatchConf(name="m", kind="http"), 500, {}, "") is True
    assert http_response_passes(None, 399, {}, "") is True
    assert http_response_passes(None, 400, {}, "") is False
    assert http_response_passes(None, 199, {}, "") is False


def test_match_require_is_not_evaluated():
    match = MatchConf(name="m", kind="http", require=("$upstream_http_x_ready",))
    assert http_response_passes(match, 200, {}, "") is True


def test_checker_applies_its_match_block_to_the_backend_answer():
    w = make_world(health_status=503, health_body="maintenance")
    match = MatchConf(name="m", kind="http", status=StatusTest(False, ((200, 599),)), body_regex="maint")
    w.checker(HealthCheckConf(), match).start()
    run(w, 8.5)
    assert (w.peer().hc_last_passed, w.peer().state) == (True, "up")


# ---------------------------------------------------------------------------------------------
# several checks on one upstream


def test_one_failing_check_keeps_peer_unhealthy_while_another_passes():
    w = make_world(health_body="OK")
    plain = w.checker(HealthCheckConf(interval_ms=5000, uri="/"))
    picky = w.checker(HealthCheckConf(interval_ms=5000, uri="/ready"), MatchConf("ready", "http", body_regex="READY"))
    plain.start()
    picky.start()
    peer = w.peer()
    run(w, 20_000)
    assert peer.state == "unhealthy"
    assert (plain.verdict(peer), picky.verdict(peer)) == (None, "unhealthy")
    assert HealthRegistry.of(w.upstream).verdicts(peer) == {picky: "unhealthy"}
    assert (peer.hc_checks, peer.hc_fails, peer.hc_unhealthy) == (8, 4, 1)
    picky.stop()
    assert peer.state == "up"


def test_peer_unhealthy_by_two_checks_counts_one_unhealthy_transition():
    w = make_world()
    w.backends["10.0.0.1:80"].set_state("down")
    a = w.checker(HealthCheckConf(interval_ms=1000))
    b = w.checker(HealthCheckConf(interval_ms=1500))
    a.start()
    b.start()
    run(w, 5000)
    peer = w.peer()
    assert (peer.state, peer.hc_unhealthy) == ("unhealthy", 1)
    a.stop()
    assert peer.state == "unhealthy"
    b.stop()
    assert peer.state == "up"


# ---------------------------------------------------------------------------------------------
# stream


def test_stream_check_passes_once_the_connection_is_established():
    w = make_world(kind="stream")
    w.checker(HealthCheckConf()).start()
    run(w, 2)
    assert w.peer().hc_checks == 0
    run(w, 2.5)
    assert (w.peer().hc_checks, w.peer().hc_last_passed) == (1, True)


def test_stream_check_fails_when_the_connection_is_refused():
    w = make_world(kind="stream")
    w.backends["10.0.0.1:80"].set_state("down")
    w.checker(HealthCheckConf()).start()
    run(w, 2.5)
    assert (w.peer().hc_fails, w.peer().state) == (1, "unhealthy")


@pytest.mark.parametrize(
    ("expect", "regex", "passes"),
    [("+PONG", False, True), ("PONG", False, False), ("^\\+PO", True, True), ("PANG", True, False)],
)
def test_stream_send_expect_compares_the_answer(expect, regex, passes):
    w = make_world(kind="stream", health_body="+PONG\r\n")
    match = MatchConf("redis", "stream", send="PING\r\n", expect=expect, expect_regex=regex)
    w.checker(HealthCheckConf(), match).start()
    # connect 2, send 1, answer after 4, back 1
    run(w, 8)
    assert w.peer().hc_checks == 0
    run(w, 8.5)
    assert w.peer().hc_last_passed is passes
    assert stream_data_passes(match, "+PONG\r\n") is passes


def test_stream_expect_fails_when_the_answer_misses_health_check_timeout():
    w = make_world(kind="stream")
    match = MatchConf("m", "stream", send="hi", expect="OK")
    w.checker(HealthCheckConf(), match, stream_timeout=5).start()
    run(w, 7)
    assert w.peer().hc_checks == 0
    run(w, 7.5)
    assert (w.peer().hc_fails, w.peer().state) == (1, "unhealthy")


def test_udp_check_fails_on_port_unreachable_and_passes_without_an_error():
    w = make_world(servers=("10.0.0.1:53", "10.0.0.2:53"), kind="stream")
    w.backends["10.0.0.2:53"].set_state("down")
    w.checker(HealthCheckConf(udp=True), stream_timeout=5000).start()
    run(w, 2.5)  # 10.0.0.2 refuses: ICMP port unreachable comes back after one round trip
    assert [(p.hc_checks, p.hc_last_passed) for p in w.upstream.peers] == [(0, None), (1, False)]
    run(w, 5000.5)
    assert (w.peer(0).hc_checks, w.peer(0).hc_last_passed) == (1, True)
