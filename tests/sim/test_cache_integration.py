"""The proxy cache through a whole node (sim.node.node's cache glue + sim.http.cache + sim.http.proxy + backends).

The worlds here have 1 ms one-way links with infinite bandwidth; backends serve in a constant
10 ms and every response is 3896 body + 200 header bytes = 4096 bytes, one file-system block.
So a fetch takes 2 (connect) + 1 (request) + 10 + 1 (answer) = 14 ms, a refused connect 2 ms,
and a response served from the cache leaves the node 0.2 ms after the request (``cache_hit_ms``).
The cache key of ``/a`` is ``httpbackend/a`` (``$scheme$proxy_host$request_uri``).
"""

from __future__ import annotations

import pytest
import yaml
from simpy.events import Timeout

from sim.cluster import cluster, scenario

A, B = "10.0.0.1:80", "10.0.0.2:80"
QUIET = {"service_time": 10, "header_bytes": 200, "response_size": 3896, "health_time": 4}
SIZE = 4096
STAT_FIELDS = ("hit", "stale", "updating", "revalidated", "miss", "expired", "bypass")


def world(location: str, *, cache_path: str = "", servers: str = f"server {A};", backends: dict | None = None,
          workload: dict | None = None, seed: int = 7) -> cluster.Cluster:
    conf = (
        "http {\n"
        f"  proxy_cache_path /var/cache/nginx keys_zone=one:1m {cache_path};\n"
        f"  upstream backend {{\n    zone backend 64k;\n{servers}\n  }}\n"
        "  server {\n    listen 80;\n"
        "    location / {\n      proxy_pass http://backend;\n      proxy_cache one;\n"
        f"{location}\n    }}\n"
        "  }\n"
        "}\n"
    )
    data = {
        "seed": seed,
        "nodes": 1,
        "network": {"latency_ms": 1.0, "bandwidth_mbps": float("inf")},
        "nginx_conf_inline": conf,
        "backend_defaults": QUIET,
        "backends": {addr: {**QUIET, **spec} for addr, spec in (backends or {}).items()},
        "workloads": [workload] if workload else [],
    }
    sc = scenario.loads(yaml.safe_dump(data), filename="t.yaml")
    return cluster.Cluster(sc, start_workloads=workload is not None, sample=False)


class Client:
    """Sends single requests to node1 at given sim times; records what each one got."""

    def __init__(self, cl: cluster.Cluster):
        self.cl = cl
        self.env = cl.env
        self.node = cl.nodes["node1"]
        self.zone = self.node.caches["one"]
        self.done: list[tuple[float, int, str | None, int]] = []  # time, status, cache status, bytes

    def send_at(self, t: float, uri: str = "/a", vars: dict | None = None) -> None:
        def send(_ev):
            conn = self.node.open_conn()
            if conn is not None:
                self.node.handle(conn, uri, "localhost", 80, "10.9.0.1", 0, self._done, vars=vars)

        Timeout(self.env, t - self.env.now).callbacks.append(send)

    def at(self, t: float, action) -> None:
        Timeout(self.env, t - self.env.now).callbacks.append(lambda _ev: action())

    def _done(self, req) -> None:
        self.done.append((self.env.now, req.status, req.cache_status, req.resp_bytes))
        self.node.close_conn(req.conn)

    def statuses(self) -> list[str | None]:
        return [d[2] for d in self.done]

    def responses(self) -> dict[str, int]:
        return {f: self.zone.stats[f]["responses"] for f in STAT_FIELDS}


def counts(**nonzero) -> dict[str, int]:
    return {f: nonzero.get(f, 0) for f in STAT_FIELDS}


# --- hits never reach the backends -------------------------------------------------------------

ZIPF_CLIENTS = {
    "name": "browsers",
    "rate": 200,
    "paths": {"count": 200, "zipf": 1.0},
    "keepalive_requests": 4,
    "bypass_share": 0.1,
    "stop": "9s",  # nothing in flight at 10 s, when the counts are compared
}


def test_backend_requests_equal_misses_expired_and_bypass_while_health_checks_stay_apart():
    cl = world(
        "proxy_cache_valid 200 2s;\nproxy_cache_bypass $cookie_nocache $arg_nocache;\n"
        "health_check interval=1s;",
        servers=f"server {A};\nserver {B};",
        workload=ZIPF_CLIENTS,
    )
    cl.run(10_000)
    node = cl.nodes["node1"]
    stats = node.caches["one"].stats
    got = {f: stats[f]["responses"] for f in STAT_FIELDS}
    assert got["hit"] > 0 and got["expired"] > 0 and got["bypass"] > 0
    requests = cl.backend(A).requests + cl.backend(B).requests
    assert requests == got["miss"] + got["expired"] + got["bypass"]
    peers = node.upstreams["backend"].peers
    assert sum(p.requests for p in peers) == requests
    assert cl.backend(A).health_requests + cl.backend(B).health_requests == sum(p.hc_checks for p in peers)
    assert sum(p.hc_checks for p in peers) > 0
    assert sum(got.values()) == cl.workloads[0].stats["node1"].completed


def test_with_background_update_each_stale_response_has_one_refresh_counted_as_expired():
    cl = world(
        "proxy_cache_valid 200 2s;\nproxy_cache_bypass $cookie_nocache $arg_nocache;\n"
        "proxy_cache_use_stale updating;\nproxy_cache_background_update on;",
        workload=ZIPF_CLIENTS,
    )
    cl.run(10_000)
    stats = cl.nodes["node1"].caches["one"].stats
    got = {f: stats[f]["responses"] for f in STAT_FIELDS}
    assert got["stale"] > 0 and got["expired"] == got["stale"]
    assert cl.backend(A).requests == got["miss"] + got["expired"] + got["bypass"]
    # the refreshes answer no client: the client responses are all the rest
    assert sum(got.values()) - got["expired"] == cl.workloads[0].stats["node1"].completed


def test_zipf_hit_ratio_rises_with_max_size():
    ratios = []
    for max_size in ("40k", "400k", "4m"):  # room for 9, 99 and 1023 responses
        cl = world(
            "proxy_cache_valid 200 1h;",
            cache_path=f"max_size={max_size}",
            workload={"rate": 500, "paths": {"count": 2000, "zipf": 1.0}, "keepalive_requests": 8, "stop": "9s"},
        )
        cl.run(10_000)
        zone = cl.nodes["node1"].caches["one"]
        stats = zone.stats
        assert zone.size < zone.max_size
        assert cl.backend(A).requests == stats["miss"]["responses"]
        ratios.append(stats["hit"]["responses"] / (stats["hit"]["responses"] + stats["miss"]["responses"]))
    assert ratios[0] < ratios[1] < ratios[2]


# --- statuses through the node -----------------------------------------------------------------

STALE_CONF = "proxy_cache_valid 200 10s;\nproxy_cache_use_stale error timeout http_500;\nproxy_connect_timeout 1s;"


@pytest.mark.parametrize(
    ("fault", "served_at"),
    [
        ("down", 11_002.0),  # refused after one round trip: an error
        ("erroring", 11_014.0),  # the backend answers 500
        ("cut", 12_000.0),  # no answer to the SYN: a timeout after proxy_connect_timeout
    ],
)
def test_use_stale_serves_the_cached_response_while_the_backend_fails(fault, served_at):
    cl = world(STALE_CONF)
    c = Client(cl)
    c.send_at(0)
    if fault == "cut":
        c.at(5000, lambda: cl.network.cut("node1", A))
    else:
        c.at(5000, lambda: cl.backend(A).set_state(fault))
    c.send_at(11_000)
    cl.run(20_000)
    assert c.done == [(14.0, 200, "MISS", SIZE), (served_at, 200, "STALE", SIZE)]
    assert c.responses() == counts(miss=1, stale=1)
    assert c.zone.stats["stale"]["bytes"] == SIZE
    assert cl.backend(A).requests == (2 if fault == "erroring" else 1)


def test_use_stale_without_the_failure_kind_passes_the_failure_on_and_counts_expired():
    cl = world("proxy_cache_valid 200 10s;\nproxy_cache_use_stale timeout;")
    c = Client(cl)
    c.send_at(0)
    c.at(5000, lambda: cl.backend(A).set_state("down"))
    c.send_at(11_000)
    cl.run(20_000)
    assert c.done[1] == (11_002.0, 502, "EXPIRED", 0)
    assert c.responses() == counts(miss=1, expired=1)
    assert c.zone.stats["expired"]["responses_written"] == 0
    assert c.zone.get("httpbackend/a") is not None  # the expired entry stays for later


def test_stale_entry_stops_being_served_once_the_backend_is_back():
    cl = world(STALE_CONF)
    c = Client(cl)
    c.send_at(0)
    c.at(5000, lambda: cl.backend(A).set_state("down"))
    c.send_at(11_000)
    c.at(13_000, lambda: cl.backend(A).set_state("up"))
    c.send_at(14_000)
    c.send_at(15_000)
    cl.run(20_000)
    assert c.statuses() == ["MISS", "STALE", "EXPIRED", "HIT"]
    assert c.zone.get("httpbackend/a").valid_until == 14_014.0 + 10_000


def test_failed_fetch_of_a_missing_key_counts_as_a_miss_with_nothing_written():
    cl = world("proxy_cache_valid 200 10s;\nproxy_cache_use_stale error;")
    c = Client(cl)
    cl.backend(A).set_state("down")
    c.send_at(0)
    cl.run(1000)
    assert c.done == [(2.0, 502, "MISS", 0)]
    assert c.zone.stats["miss"] == {"responses": 1, "bytes": 0, "responses_written": 0, "bytes_written": 0}
    assert c.zone.size == 0 and len(c.zone) == 0


def test_use_stale_updating_serves_updating_to_requests_during_a_refresh():
    cl = world("proxy_cache_valid 200 10s;\nproxy_cache_use_stale updating;")
    c = Client(cl)
    for t in (0, 11_000, 11_005, 11_010, 11_020):
        c.send_at(t)
    cl.run(20_000)
    assert c.done == [
        (14.0, 200, "MISS", SIZE),
        (11_005.2, 200, "UPDATING", SIZE),
        (11_010.2, 200, "UPDATING", SIZE),
        (11_014.0, 200, "EXPIRED", SIZE),
        (11_020.2, 200, "HIT", SIZE),
    ]
    assert cl.backend(A).requests == 2
    assert c.responses() == counts(miss=1, updating=2, expired=1, hit=1)


def test_without_use_stale_updating_requests_during_a_refresh_go_to_the_backend():
    cl = world("proxy_cache_valid 200 10s;")
    c = Client(cl)
    for t in (0, 11_000, 11_005):
        c.send_at(t)
    cl.run(20_000)
    assert c.statuses() == ["MISS", "EXPIRED", "EXPIRED"]
    assert cl.backend(A).requests == 3


def test_background_update_serves_stale_at_once_and_refreshes_the_entry_behind_it():
    cl = world("proxy_cache_valid 200 10s;\nproxy_cache_use_stale updating;\nproxy_cache_background_update on;")
    c = Client(cl)
    for t in (0, 11_000, 11_005, 11_020):
        c.send_at(t)
    cl.run(20_000)
    assert c.done == [
        (14.0, 200, "MISS", SIZE),
        (11_000.2, 200, "STALE", SIZE),
        (11_005.2, 200, "UPDATING", SIZE),
        (11_020.2, 200, "HIT", SIZE),
    ]
    assert cl.backend(A).requests == 2
    assert c.zone.get("httpbackend/a").valid_until == 11_014.0 + 10_000
    # the background subrequest answers no client and is counted under its own status
    assert c.responses() == counts(miss=1, stale=1, updating=1, hit=1, expired=1)
    assert c.zone.stats["expired"]["responses_written"] == 1
    assert c.node.upstreams["backend"].peers[0].requests == 2


def test_background_update_revalidates_an_unchanged_entry_with_a_304():
    cl = world(
        "proxy_cache_valid 200 10s;\nproxy_cache_use_stale updating;\nproxy_cache_background_update on;\n"
        "proxy_cache_revalidate on;",
        backends={A: {"content_change": "1h"}},
    )
    c = Client(cl)
    for t in (0, 11_000, 11_020):
        c.send_at(t)
    cl.run(20_000)
    assert c.statuses() == ["MISS", "STALE", "HIT"]
    assert c.responses() == counts(miss=1, stale=1, revalidated=1, hit=1)
    assert c.node.upstreams["backend"].peers[0].codes == {200: 1, 304: 1}
    assert c.zone.get("httpbackend/a").valid_until == 11_014.0 + 10_000


@pytest.mark.parametrize(("lock", "backend_requests"), [("on", 1), ("off", 5)])
def test_proxy_cache_lock_collapses_concurrent_misses_to_one_backend_request(lock, backend_requests):
    cl = world(f"proxy_cache_valid 200 10s;\nproxy_cache_lock {lock};")
    c = Client(cl)
    for t in range(5):
        c.send_at(t)
    cl.run(5000)
    assert cl.backend(A).requests == backend_requests
    if lock == "on":
        # waiters look again at their next poll, 500 ms after they began to wait, and hit
        assert c.done == [(14.0, 200, "MISS", SIZE)] + [(500.2 + t, 200, "HIT", SIZE) for t in range(1, 5)]
        assert c.responses() == counts(miss=1, hit=4)
    else:
        assert c.statuses() == ["MISS"] * 5
        assert c.zone.stats["miss"]["responses_written"] == 5


def test_revalidate_with_unchanged_content_gets_304_and_counts_revalidated():
    cl = world("proxy_cache_valid 200 10s;\nproxy_cache_revalidate on;", backends={A: {"content_change": "1h"}})
    c = Client(cl)
    for t in (0, 11_000, 12_000):
        c.send_at(t)
    cl.run(30_000)
    # the 304 carries headers only: 200 bytes back instead of 4096
    assert c.done[1] == (11_014.0, 200, "REVALIDATED", SIZE)
    assert c.statuses() == ["MISS", "REVALIDATED", "HIT"]
    assert c.responses() == counts(miss=1, revalidated=1, hit=1)
    peer = c.node.upstreams["backend"].peers[0]
    assert peer.codes == {200: 1, 304: 1}
    assert c.zone.get("httpbackend/a").valid_until == 11_014.0 + 10_000
    assert c.zone.size == SIZE


def test_revalidate_with_changed_content_stores_the_new_200():
    cl = world("proxy_cache_valid 200 10s;\nproxy_cache_revalidate on;", backends={A: {"content_change": "5s"}})
    c = Client(cl)
    for t in (0, 11_000, 12_000):
        c.send_at(t)
    cl.run(30_000)
    assert c.statuses() == ["MISS", "EXPIRED", "HIT"]
    assert c.zone.stats["expired"]["responses_written"] == 1
    assert c.node.upstreams["backend"].peers[0].codes == {200: 2}
    entry = c.zone.get("httpbackend/a")
    assert (entry.version, entry.date) == (2, 11_014.0)  # the content of 10 s .. 15 s


def test_without_revalidate_an_expired_entry_is_fetched_in_full():
    cl = world("proxy_cache_valid 200 10s;", backends={A: {"content_change": "1h"}})
    c = Client(cl)
    for t in (0, 11_000):
        c.send_at(t)
    cl.run(30_000)
    assert c.statuses() == ["MISS", "EXPIRED"]
    assert c.node.upstreams["backend"].peers[0].codes == {200: 2}


BYPASS = "proxy_cache_valid 200 10s;\nproxy_cache_bypass $cookie_nocache $arg_nocache;"


def test_bypass_by_cookie_or_argument_is_counted_and_its_response_still_written():
    cl = world(BYPASS)
    c = Client(cl)
    c.send_at(0, "/a", vars={"$cookie_nocache": "1"})
    c.send_at(100, "/a")
    c.send_at(200, "/a", vars={"$cookie_nocache": "1"})
    c.send_at(300, "/b?nocache=1")
    c.send_at(400, "/b?nocache=0")
    cl.run(5000)
    assert c.statuses() == ["BYPASS", "HIT", "BYPASS", "BYPASS", "MISS"]
    assert cl.backend(A).requests == 4
    assert c.zone.stats["bypass"] == {"responses": 3, "bytes": 3 * SIZE, "responses_written": 3, "bytes_written": 3 * SIZE}
    assert sorted(k for k, _ in c.zone.entries()) == ["httpbackend/a", "httpbackend/b?nocache=0", "httpbackend/b?nocache=1"]


def test_bypass_with_proxy_no_cache_writes_nothing():
    cl = world(BYPASS + "\nproxy_no_cache $cookie_nocache $arg_nocache;")
    c = Client(cl)
    c.send_at(0, "/a", vars={"$cookie_nocache": "1"})
    c.send_at(100, "/a")
    cl.run(5000)
    assert c.statuses() == ["BYPASS", "MISS"]
    assert c.zone.stats["bypass"] == {"responses": 1, "bytes": SIZE, "responses_written": 0, "bytes_written": 0}
    assert c.zone.stats["miss"]["responses_written"] == 1


# --- statistics, inactive, crash -------------------------------------------------------------


def test_statistics_reset_zeroes_the_counters_and_leaves_size_alone():
    cl = world(
        "proxy_cache_valid 200 1h;",
        cache_path="max_size=400k",
        workload={"rate": 200, "paths": {"count": 500, "zipf": 1.0}},
    )
    cl.run(5000)
    zone = cl.nodes["node1"].caches["one"]
    size, entries = zone.size, len(zone.entries())
    assert size == entries * SIZE and size > 0
    zone.reset_statistics()
    assert all(v == 0 for block in zone.stats.values() for v in block.values())
    assert (zone.size, zone.max_size, len(zone.entries())) == (size, 400 * 1024, entries)
    cl.run(6000)
    assert zone.stats["hit"]["responses"] > 0
    assert zone.size == len(zone.entries()) * SIZE


def test_inactive_drops_an_entry_unused_that_long_even_while_it_is_fresh():
    cl = world("proxy_cache_valid 200 1h;", cache_path="inactive=2s")
    c = Client(cl)
    c.send_at(0, "/a")
    c.send_at(0, "/b")
    c.send_at(1000, "/b")  # a hit renews /b's deadline to 3000
    cl.run(2013.9)
    assert c.zone.size == 2 * SIZE  # /a: stored at 14, unused until 2014
    cl.run(2014.1)
    assert c.zone.size == SIZE
    assert [k for k, _ in c.zone.entries()] == ["httpbackend/b"]
    c.send_at(2500, "/a")
    cl.run(5000)
    assert c.statuses() == ["MISS", "MISS", "HIT", "MISS"]
    assert cl.backend(A).requests == 3


def test_a_fetch_begun_before_a_crash_writes_nothing_to_the_cache():
    cl = world("proxy_cache_valid 200 1h;")
    c = Client(cl)
    c.send_at(0)
    c.at(5, c.node.crash)  # the response arrives at 14, to a dead process
    c.at(20, c.node.restart)
    c.send_at(30)
    cl.run(1000)
    assert [(d[1], d[2]) for d in c.done] == [(0, "MISS"), (200, "MISS")]
    assert cl.backend(A).requests == 2
    assert c.responses() == counts(miss=1)


def test_a_reload_without_proxy_cache_sends_the_next_request_to_the_upstream():
    from sim.conf import reader as config

    c = Client(world("      proxy_cache_valid 200 1m;"))
    c.send_at(0)
    c.send_at(20)
    conf = (
        "http {\n"
        f"  upstream backend {{\n    zone backend 64k;\n    server {A};\n  }}\n"
        "  server {\n    listen 80;\n    location / {\n      proxy_pass http://backend;\n    }\n  }\n"
        "}\n"
    )
    c.at(30, lambda: c.node.reload(config.loads(conf)))
    c.send_at(40)
    c.env.run(until=100)
    # cached before the reload (a miss, then a hit 0.2 ms later); fetched after it, uncached
    assert [(t, s) for t, _, s, _ in c.done] == [(14, "MISS"), (20.2, "HIT"), (54, None)]


def test_a_reload_that_removes_the_cache_while_a_request_is_at_the_upstream_answers_it_uncached():
    from dataclasses import replace

    from sim.cluster import cluster, scenario

    text = """
seed: 3
nodes: 1
backends:
  "10.0.0.1:80": {service_time: 50, cache_max_age: 60s}
nginx_conf_inline: |
  http {
    proxy_cache_path /tmp/c keys_zone=c:1m;
    upstream u { zone u 64k; server 10.0.0.1:80; }
    server { listen 80; location / { proxy_pass http://u; proxy_cache c; } }
  }
"""
    sc = scenario.loads(text, filename="reload.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False)
    node = cl.nodes["node1"]
    seen = []
    node.handle(node.open_conn(), "/a", "x", 80, "10.1.1.1", 100, seen.append)
    cl.run(10)
    conf = node.conf
    http = replace(conf.http, cache_paths={}, servers=tuple(
        replace(s, locations=tuple(replace(loc, proxy=replace(loc.proxy, cache=None)) for loc in s.locations))
        for s in conf.http.servers))
    node.reload(replace(conf, http=http))
    cl.run(1000)
    assert [r.status for r in seen] == [200]
    assert node.caches == {}
