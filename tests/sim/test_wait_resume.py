"""Every place where a request waits and resumes: it resumes in its own location and is counted once.

The waits: limit_req's delay, the upstream ``queue``, retries to the next upstream server, and
``error_page`` internal redirects (to a URI or a named location, with ``proxy_intercept_errors``
and ``recursive_error_pages``); and slow_start, where a recovered server's share of new requests
ramps up. Each test sends requests at exact sim times to one node and checks, besides the
statuses the clients saw, that the server zone and the location zone counted each request once
(requests = responses + discarded, nothing left processing), and that the peers' requests add up
to the proxy's attempts.

Links have no latency, requests and responses carry no bytes, and backends answer after a
constant 10 ms unless a test says otherwise.
"""

from __future__ import annotations

import pytest
import yaml
from simpy.events import Timeout

from sim.cluster import cluster, scenario
from sim.conf.config import ConfigError
from sim.conf.reader import loads as parse_conf

A, B = "10.0.0.1:80", "10.0.0.2:80"
QUIET = {"service_time": 10, "header_bytes": 0, "response_size": 0}


DOWN = "10.0.0.9:80"  # a backend that refuses every connection: its server's tries fail with 502


def world(http: str, *, backends: dict | None = None) -> cluster.Cluster:
    conf = "events {}\nhttp {\n" + http + "\n}\n"
    data = {
        "seed": 5,
        "nodes": 1,
        "network": {"latency_ms": 0},
        "nginx_conf_inline": conf,
        "backend_defaults": QUIET,
        "backends": {addr: {**QUIET, **spec} for addr, spec in (backends or {}).items()},
    }
    sc = scenario.loads(yaml.safe_dump(data), filename="t.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    cl.backend(DOWN).set_state("down")
    return cl


class Client:
    """Sends requests to node1 at given sim times and records (time, uri, status) of each answer."""

    def __init__(self, cl: cluster.Cluster):
        self.cl = cl
        self.env = cl.env
        self.node = cl.nodes["node1"]
        self.done: list[tuple[float, str, int]] = []

    def send(self, uri: str = "/", method: str = "GET"):
        conn = self.node.open_conn()
        return self.node.handle(conn, uri, "localhost", 80, "10.9.0.1", 0, self._done, method=method)

    def send_at(self, t: float, uri: str = "/") -> None:
        ev = Timeout(self.env, t - self.env.now)
        ev.callbacks.append(lambda _ev: self.send(uri))

    def run(self, until: float = 100_000) -> None:
        self.env.run(until=until)

    def _done(self, req) -> None:
        self.done.append((self.env.now, req.uri, req.status))
        self.node.close_conn(req.conn)

    def statuses(self) -> list[int]:
        return [s for _, _, s in self.done]


def counted_once(node, sent: int) -> None:
    """Every zone that saw the requests counted each exactly once, and none is in flight."""
    for zone in list(node.server_zones.values()) + list(node.location_zones.values()):
        if zone.requests == 0:
            continue
        assert zone.requests == sent
        assert zone.responses_total + zone.discarded == sent
    for zone in node.server_zones.values():
        assert zone.processing == 0
    attempts = node.proxy.attempts
    assert sum(p.requests for up in node.upstreams.values() for p in up.peers) == attempts


def server(locations: str, upstream: str = f"server {A};", extra: str = "") -> str:
    return (
        f"upstream backend {{ zone backend 64k; {upstream} }}\n{extra}\n"
        "server { listen 80; status_zone site;\n" + locations + "\n}"
    )


# --- limit_req delay ------------------------------------------------------------------------------


def test_a_delayed_request_is_served_after_its_delay_in_its_location_and_counted_once():
    cl = world(
        "limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;\n"
        + server("location / { status_zone root; limit_req zone=one burst=5; proxy_pass http://backend; }")
    )
    c = Client(cl)
    for _ in range(3):
        c.send_at(0.0)
    c.run()
    # the first passes at once, the 2nd and 3rd wait 100 and 200 ms for the bucket to leak
    assert [(t, s) for t, _, s in c.done] == [(10.0, 200), (110.0, 200), (210.0, 200)]
    lr = cl.nodes["node1"].limit_reqs["one"]
    assert (lr.passed, lr.delayed, lr.rejected) == (1, 2, 0)
    counted_once(c.node, 3)
    assert c.node.location_zones["root"].responses[1] == 3  # 2xx


# --- the upstream queue ---------------------------------------------------------------------------


def queue_world(timeout: str = "1s", size: int = 2) -> Client:
    return Client(world(server(
        "location / { status_zone root; proxy_pass http://backend; }",
        upstream=f"server {A} max_conns=1; queue {size} timeout={timeout};",
    ), backends={A: {"service_time": 100}}))


def test_queued_requests_resume_when_the_peer_frees_up_and_overflow_gets_502():
    c = queue_world()
    for _ in range(4):
        c.send_at(0.0)
    c.run()
    up = c.node.upstreams["backend"]
    # one at the peer, two queued behind it (served at 200 and 300 ms), the 4th overflows at once
    assert [(t, s) for t, _, s in c.done] == [(0.0, 502), (100.0, 200), (200.0, 200), (300.0, 200)]
    assert up.overflows == 1
    assert up.queue_len == 0
    peer = up.peers[0]
    assert peer.requests == 3 and peer.active == 0
    counted_once(c.node, 4)


def test_a_request_that_waits_past_the_queue_timeout_gets_502_and_leaves_the_queue():
    c = queue_world(timeout="150ms")
    for _ in range(3):
        c.send_at(0.0)
    c.run()
    up = c.node.upstreams["backend"]
    # the 2nd is taken at 100 ms; the 3rd would be at 200 ms but its 150 ms run out first
    assert [(t, s) for t, _, s in c.done] == [(100.0, 200), (150.0, 502), (200.0, 200)]
    assert up.queue_len == 0 and up.overflows == 0
    assert up.peers[0].requests == 2
    counted_once(c.node, 3)


# --- retries to the next upstream server -----------------------------------------------------------


def test_a_retried_request_is_counted_once_by_the_zones_and_once_per_try_by_the_peers():
    cl = world(
        server(
            "location / { status_zone root; proxy_next_upstream error http_502; proxy_pass http://backend; }",
            upstream=f"server {A} max_fails=0; server {B};",  # A stays in the rotation
        ),
        backends={A: {"status_mix": {502: 1.0}}},
    )
    c = Client(cl)
    for i in range(6):
        c.send_at(i * 50.0)
    c.run()
    assert c.statuses() == [200] * 6
    up = c.node.upstreams["backend"]
    pa, pb = (next(p for p in up.peers if p.name == a) for a in (A, B))
    # round robin: every other request goes to A first, gets 502 there and is retried on B
    assert (pa.requests, pb.requests) == (3, 6)
    assert c.node.proxy.attempts == 9
    counted_once(c.node, 6)
    assert c.node.server_zones["site"].responses[1] == 6


# --- error_page -----------------------------------------------------------------------------------


FALLBACK = "location @fallback { proxy_pass http://fallback; }"


def test_error_page_sends_a_failed_upstream_to_a_uri_with_the_original_status():
    cl = world(server(
        "location / { status_zone root; proxy_pass http://backend; error_page 502 /50x.html; }\n"
        "location = /50x.html { internal; return 200 'sorry'; }",
        upstream=f"server {DOWN};",
    ))
    c = Client(cl)
    c.send_at(0.0)
    c.send_at(100.0, "/50x.html")  # internal: a client cannot ask for it
    c.run()
    assert c.statuses() == [502, 404]
    counted_once_by_zone = c.node.server_zones["site"]
    assert counted_once_by_zone.requests == 2
    assert c.node.location_zones["root"].requests == 1
    assert c.node.server_zones["site"].processing == 0


def test_error_page_with_equals_takes_the_status_of_the_named_location_it_redirects_to():
    cl = world(server(
        "location / { status_zone root; proxy_pass http://backend; error_page 502 504 = @fallback; }\n"
        + FALLBACK,
        upstream=f"server {DOWN};",
        extra=f"upstream fallback {{ zone fallback 64k; server {B}; }}",
    ))
    c = Client(cl)
    c.send_at(0.0)
    c.run()
    assert c.statuses() == [200]
    fb = cl.nodes["node1"].upstreams["fallback"].peers[0]
    assert fb.requests == 1
    counted_once(c.node, 1)
    # the request stays in the zone of the location it came in by
    assert c.node.location_zones["root"].responses[1] == 1


def test_error_page_with_a_code_replaces_the_status_and_a_url_redirects_the_client():
    cl = world(server(
        "location / { proxy_pass http://backend; error_page 502 =200 /empty; }\n"
        "location /empty { return 204; }\n"
        "location /gone { return 404; error_page 404 http://example.com/moved; }\n"
        "location /moved { return 404; error_page 404 =301 http://example.com/new; }",
        upstream=f"server {DOWN};",
    ))
    c = Client(cl)
    c.send_at(0.0, "/")
    c.send_at(100.0, "/gone")
    c.send_at(200.0, "/moved")
    c.run()
    assert c.statuses() == [200, 302, 301]
    counted_once(c.node, 3)


def test_a_rejected_request_redirected_by_error_page_is_not_limited_again():
    cl = world(
        "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;\n"
        + server(
            "location / { limit_req zone=one; proxy_pass http://backend; error_page 503 = @fallback; }\n"
            + FALLBACK,
            extra=f"upstream fallback {{ zone fallback 64k; server {B}; }}",
        )
    )
    c = Client(cl)
    c.send_at(0.0)
    c.send_at(1.0)  # over the rate: 503, redirected to the fallback, which has no limit
    c.run()
    assert c.statuses() == [200, 200]
    node = cl.nodes["node1"]
    assert node.limit_reqs["one"].rejected == 1
    assert node.upstreams["backend"].peers[0].requests == 1
    assert node.upstreams["fallback"].peers[0].requests == 1
    counted_once(node, 2)


def test_upstream_errors_are_redirected_only_with_proxy_intercept_errors():
    def run(intercept: str) -> list[int]:
        cl = world(server(
            f"location / {{ proxy_pass http://backend; {intercept} error_page 404 =200 /nf; }}\n"
            "location = /nf { internal; return 200 'not here'; }",
        ), backends={A: {"status_mix": {404: 1.0}}})
        c = Client(cl)
        c.send_at(0.0)
        c.run()
        counted_once(c.node, 1)
        return c.statuses()

    assert run("") == [404]
    assert run("proxy_intercept_errors on;") == [200]


def test_a_second_error_is_sent_as_it_is_unless_recursive_error_pages_is_on():
    pages = (
        "location / { proxy_pass http://backend; error_page 502 /again; }\n"
        "location /again { proxy_pass http://backend; error_page 502 /again; }"
    )
    cl = world(server(pages, upstream=f"server {DOWN};"))
    c = Client(cl)
    c.send_at(0.0)
    c.run()
    assert c.statuses() == [502]
    assert c.node.upstreams["backend"].peers[0].requests == 2  # the first location's try and /again's
    counted_once(c.node, 1)

    cl = world(server("recursive_error_pages on;\n" + pages, upstream=f"server {DOWN};"))
    c = Client(cl)
    c.send_at(0.0)
    c.run()
    # a redirection cycle: nginx gives up after 10 internal redirects with 500
    assert c.statuses() == [500]
    assert c.node.upstreams["backend"].peers[0].requests == 11
    counted_once(c.node, 1)


def test_a_post_redirected_by_error_page_goes_on_as_a_get():
    cl = world(server(
        "location / { proxy_pass http://backend; error_page 502 = @fallback; }\n" + FALLBACK,
        upstream=f"server {DOWN};",
        extra=f"upstream fallback {{ zone fallback 64k; server {B}; }}",
    ))
    c = Client(cl)
    req = c.send("/", method="POST")
    c.run()
    assert req.method == "GET" and req.status == 200


def test_the_server_level_error_page_answers_a_request_no_location_matches():
    cl = world(
        "server { listen 80; status_zone site; error_page 404 =200 /fallback;\n"
        "  location /app { return 200 'app'; }\n  location = /fallback { return 200 'f'; } }"
    )
    c = Client(cl)
    c.send_at(0.0, "/nothing-here")
    c.run()
    # /nothing-here matches no location (no "location /"); the server's error_page applies
    assert c.statuses() == [200]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("error_page 200 /x;", 'value "200" must be between 300 and 599'),
        ("error_page 499 /x;", 'value "499" is not allowed'),
        ("error_page =200 404 /x;", 'invalid value "=200"'),
        ("error_page 404 =abc /x;", 'invalid value "=abc"'),
    ],
)
def test_bad_error_page_lines_are_refused_with_nginx_messages(line, message):
    conf = "events {}\nhttp { server { listen 80; location / { " + line + " return 200; } } }\n"
    with pytest.raises(ConfigError, match=message):
        parse_conf(conf, filename="t.conf")


# --- slow_start -----------------------------------------------------------------------------------


def test_a_recovered_server_in_slow_start_gets_a_growing_share_and_each_request_once():
    cl = world(server(
        "location / { status_zone root; proxy_pass http://backend; }",
        upstream=f"server {A} weight=10 slow_start=10s max_fails=1 fail_timeout=1s; server {B} weight=10;",
    ), backends={A: {"service_time": 1}, B: {"service_time": 1}})
    c = Client(cl)
    up = c.node.upstreams["backend"]
    pa = next(p for p in up.peers if p.name == A)
    cl.backend(A).set_state("down")
    t = 0.0
    for _ in range(20):  # A refuses, fails once and is left alone for fail_timeout
        c.send_at(t)
        t += 10.0
    c.run(until=500.0)
    cl.backend(A).set_state("up")
    shares = []
    for window in range(4):  # after fail_timeout A is back, ramping over 10 s
        start = 1_000.0 + window * 3_000.0
        before = pa.requests
        for i in range(200):
            c.send_at(start + i * 10.0)
        c.run(until=start + 2_500.0)
        shares.append((pa.requests - before) / 200)
    assert shares == sorted(shares) and shares[0] < 0.25 and shares[-1] > 0.4
    sent = 20 + 800
    counted_once(c.node, sent)
    assert c.statuses().count(200) >= sent - 2
