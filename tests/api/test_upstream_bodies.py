"""Reused upstream bodies (``api.render.UpstreamBodies``) are never stale.

The API answers ``GET .../upstreams/{u}/`` (and the collections) from a body encoded earlier
while the upstream's ``epoch`` has not moved and, when a peer is down-ish, sim time has not
moved either. Each test changes the model between two GETs, one way at a time (traffic, a
request at the same sim time, a server patched, added or removed, statistics reset, a health
check, a failure, the clock offset, time alone), and expects the second GET to show it; a
hypothesis test mixes all of them and compares every reused body with a fresh rendering, after
every simulated event (a GET can come between any two).
"""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from api import render
from api.app import create_app
from sim.cluster import cluster, scenario
from sim.conf import reader

WORLD = """
seed: 3
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend {
      zone backend 64k;
      server 10.0.0.1:80 max_fails=2 fail_timeout=1s;
      server 10.0.0.2:80 max_fails=1 fail_timeout=1s slow_start=2s;
      server 10.0.0.3:80 max_conns=3;
      server 10.0.0.4:80 backup;
      queue 5 timeout=200ms;
      keepalive 4;
    }
    upstream queued { zone queued 64k; server 10.0.0.5:80 max_conns=1; queue 2 timeout=30ms; }
    server {
      listen 80;
      location /q { proxy_pass http://queued; }
      location / {
        proxy_pass http://backend;
        proxy_next_upstream error timeout http_502;
        health_check interval=700ms fails=2 passes=1;
      }
      location /api { api write=on; }
    }
  }
  stream {
    upstream db { zone db 64k; server 10.0.1.1:5432 max_fails=1 fail_timeout=1s; server 10.0.1.2:5432; }
    server { listen 5432; proxy_pass db; }
  }
backend_defaults:
  concurrency: 4
  service_time: {dist: exponential, mean: 20}
  status_mix: {200: 0.85, 502: 0.1, 404: 0.05}
backends:
  "10.0.0.2:80": {status_mix: {200: 0.5, 502: 0.5}}
workloads:
  - rate: 80
  - {rate: 60, paths: {list: ["/q"]}}
stream_workloads:
  - {name: tcp, port: 5432, rate: 20, duration: {dist: exponential, mean: 300}, bytes_sent: 512}
faults:
  - {at: 1s, action: backend_down, target: "10.0.1.1:5432", duration: 2s}
  - {at: 2s, action: backend_down, target: "10.0.0.1:80", duration: 3s}
"""

QUIET = """
seed: 1
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend {
      zone backend 64k;
      server 10.0.0.1:80 max_fails=1 fail_timeout=2s;
      server 10.0.0.2:80;
    }
    server { listen 80; location / { proxy_pass http://backend; } location /api { api write=on; } }
  }
"""

RESOLVED = """
seed: 5
nodes: 1
hosts:
  svc.example: ["10.0.5.1", "10.0.5.2"]
nginx_conf_inline: |
  http {
    resolver 10.0.0.53 valid=1s status_zone=dns;
    upstream backend {
      zone backend 64k;
      server svc.example resolve;
      server 10.0.0.1:80;
    }
    server { listen 80; location / { proxy_pass http://backend; } location /api { api; } }
  }
workloads:
  - rate: 50
"""

PATH = "/api/9/http/upstreams/backend"


def build(text: str, run_ms: float = 0.0, **kw):
    cl = cluster.Cluster(scenario.loads(text, filename="t.yaml"), **kw)
    if run_ms:
        cl.run(run_ms)
    return cl, cl.nodes["node1"]


def fresh(node, name: str = "backend", version: int = 9, fields: str | None = None) -> bytes:
    up = node.upstreams[name]
    return orjson.dumps(render.filter_fields(render.upstream(up, version, node.env.now, node.clock), fields))


def peers(client) -> list[dict]:
    return client.get(PATH).json()["peers"]


# --------------------------------------------------------------------------------------------------
# One change at a time, through the API


def test_an_unchanged_upstream_is_answered_from_the_reused_body():
    cl, node = build(WORLD, 1500)
    app = create_app(node)
    client = TestClient(app)
    first = client.get(PATH).content
    bodies = app.state.nginx.bodies
    hits = bodies.hits
    assert client.get(PATH).content == first == fresh(node)
    assert bodies.hits == hits + 1


def test_traffic_between_two_gets_shows_in_the_second():
    cl, node = build(WORLD, 1500)
    client = TestClient(create_app(node))
    before = sum(p["requests"] for p in peers(client))
    cl.run(2500)
    after = client.get(PATH).content
    assert sum(p["requests"] for p in orjson.loads(after)["peers"]) > before
    assert after == fresh(node)


def test_a_request_injected_at_the_same_sim_time_shows_in_the_next_get():
    cl, node = build(QUIET, 100, start_workloads=False)
    client = TestClient(create_app(node))
    assert [p["requests"] for p in peers(client)] == [0, 0]
    now = node.env.now
    conn = node.open_conn()
    node.handle(conn, "/x", "localhost", 80, "10.9.0.1", 100)  # the live server does this between steps
    assert node.env.now == now
    assert sum(p["requests"] for p in peers(client)) == 1
    assert sum(p["active"] for p in peers(client)) == 1


def test_a_patched_server_shows_in_the_next_get():
    cl, node = build(QUIET, 100, start_workloads=False)
    client = TestClient(create_app(node, write=True))
    assert peers(client)[1]["state"] == "up"
    node.upstreams["backend"].patch_server(1, {"down": True})
    assert peers(client)[1]["state"] == "down"
    client.patch(PATH + "/servers/1", json={"down": False, "weight": 7})
    got = peers(client)[1]
    assert (got["state"], got["weight"]) == ("up", 7)


def test_servers_added_and_removed_show_in_the_next_get():
    cl, node = build(WORLD, 1500)
    client = TestClient(create_app(node, write=True))
    assert len(peers(client)) == 4
    node.upstreams["backend"].add_server({"server": "10.0.0.9:80"}, has_resolver=False)
    assert [p["server"] for p in peers(client)][-1] == "10.0.0.9:80"
    client.delete(PATH + "/servers/0")
    assert [p["id"] for p in peers(client)] == [1, 2, 3, 4]


def test_statistics_reset_shows_in_the_next_get():
    cl, node = build(WORLD, 1500)
    client = TestClient(create_app(node, write=True))
    assert sum(p["requests"] for p in peers(client)) > 0
    node.upstreams["backend"].reset_statistics()
    assert sum(p["requests"] for p in peers(client)) == 0


def test_a_health_check_between_two_gets_shows_in_the_second():
    cl, node = build(WORLD, 1500, start_workloads=False)
    client = TestClient(create_app(node))
    checks = [p["health_checks"]["checks"] for p in peers(client)]
    cl.run(2300)  # one more round of checks (every 700 ms), no requests
    assert [p["health_checks"]["checks"] for p in peers(client)] > checks
    assert client.get(PATH).content == fresh(node)


def test_health_checks_stopping_at_the_same_sim_time_shows_in_the_next_get():
    cl, node = build(WORLD, 4000)  # 10.0.0.1 is down from 2 s to 5 s: unhealthy by now
    client = TestClient(create_app(node))
    assert peers(client)[0]["state"] == "unhealthy"
    node.crash()  # its checkers stop, and their verdicts with them
    assert peers(client)[0]["state"] == "up"
    assert client.get(PATH).content == fresh(node)


def test_a_failure_at_the_same_sim_time_shows_in_the_next_get():
    cl, node = build(QUIET, 100, start_workloads=False)
    client = TestClient(create_app(node))
    assert peers(client)[0]["state"] == "up"
    node.upstreams["backend"].peers[0].note_failure(node.env.now)
    got = peers(client)[0]
    assert (got["state"], got["fails"], got["unavail"]) == ("unavail", 1, 1)


def test_a_clock_offset_change_shows_in_selected():
    cl, node = build(WORLD, 1500)
    client = TestClient(create_app(node))
    before = peers(client)[0]["selected"]
    node.clock.offset_ms += 3_600_000
    after = peers(client)[0]["selected"]
    assert after != before
    assert after[11:13] == f"{(int(before[11:13]) + 1) % 24:02d}"


def test_a_reload_shows_the_new_upstream():
    cl, node = build(WORLD, 1500)
    client = TestClient(create_app(node))
    assert sum(p["requests"] for p in peers(client)) > 0
    # a reload that changes the upstream's zone builds a new upstream (docs/reload.md)
    text = scenario.loads(WORLD, filename="t.yaml").model.nginx_conf_inline.replace("zone backend 64k", "zone backend 128k")
    node.reload(reader.loads(text, filename="<reloaded>"))
    assert sum(p["requests"] for p in peers(client)) == 0


def test_a_re_resolution_that_changes_the_peers_shows_in_the_next_get():
    cl, node = build(RESOLVED, 100)
    client = TestClient(create_app(node))
    assert [p["server"] for p in peers(client)] == ["10.0.0.1:80", "10.0.5.1:80", "10.0.5.2:80"]
    node.http_resolver.set_answer("svc.example", ["10.0.5.2", "10.0.5.3"])
    _run_checking(node, render.UpstreamBodies(), 1500)  # the answer runs out at 1 s
    assert [p["server"] for p in peers(client)] == ["10.0.0.1:80", "10.0.5.2:80", "10.0.5.3:80"]
    assert client.get(PATH).content == fresh(node)


# --------------------------------------------------------------------------------------------------
# Time alone


def test_downtime_of_an_unavail_peer_grows_with_sim_time_alone():
    cl, node = build(QUIET, 100, start_workloads=False)
    client = TestClient(create_app(node))
    node.upstreams["backend"].peers[0].note_failure(100.0)
    assert peers(client)[0]["downtime"] == 0
    epoch = node.upstreams["backend"].epoch
    cl.run(600)  # nothing is scheduled: only env.now moves
    assert node.upstreams["backend"].epoch == epoch
    got = peers(client)[0]
    assert (got["state"], got["downtime"]) == ("unavail", 500)


def test_an_unavail_period_ends_with_sim_time_alone():
    cl, node = build(QUIET, 100, start_workloads=False)
    client = TestClient(create_app(node))
    node.upstreams["backend"].peers[0].note_failure(100.0)
    assert peers(client)[0]["state"] == "unavail"
    assert "downstart" in peers(client)[0]
    cl.run(2200)  # fail_timeout=2s ran out at 2100
    got = peers(client)[0]
    assert (got["state"], got["downtime"]) == ("up", 2000)
    assert "downstart" not in got


def test_an_up_upstream_is_reused_while_only_time_passes():
    cl, node = build(QUIET, 100, start_workloads=False)
    app = create_app(node)
    client = TestClient(app)
    first = client.get(PATH).content
    hits = app.state.nginx.bodies.hits
    cl.run(5000)
    assert client.get(PATH).content == first == fresh(node)
    assert app.state.nginx.bodies.hits == hits + 1


# --------------------------------------------------------------------------------------------------
# Everything mixed: a reused body is always what a fresh rendering says

STEP = st.one_of(
    st.tuples(st.just("run"), st.floats(min_value=0.5, max_value=300.0)),
    st.tuples(st.just("patch"), st.integers(0, 3), st.sampled_from(
        [{"down": True}, {"down": False}, {"drain": True}, {"weight": 5}, {"max_fails": 0}, {"max_conns": 1}])),
    st.tuples(st.just("fail"), st.integers(0, 3)),
    st.tuples(st.just("inject"), st.integers(1, 3)),
    st.tuples(st.just("add"), st.integers(10, 20)),
    st.tuples(st.just("remove"), st.integers(0, 3)),
    st.tuples(st.just("reset"), st.just(0)),
    st.tuples(st.just("offset"), st.integers(-5000, 5000)),
)

VIEWS = [(9, None), (7, None), (1, None), (9, "peers"), (9, "")]


def _run_checking(node, bodies, until: float) -> None:
    """Advance the model to ``until`` one event at a time, checking the bodies after each."""
    env = node.env
    while env.peek() <= until:
        env.step()
        _check(bodies, node)
    if until > env.now:
        env.run(until=until)


def _apply(cl, node, bodies, step) -> None:
    kind, arg = step[0], step[1]
    up = node.upstreams["backend"]
    now = node.env.now
    if kind == "run":
        _run_checking(node, bodies, now + arg)
    elif kind == "patch" and arg < len(up.peers):
        up.patch_server(up.peers[arg].id, step[2])
    elif kind == "fail" and arg < len(up.peers):
        up.peers[arg].note_failure(now)
    elif kind == "inject":
        for _ in range(arg):
            node.handle(node.open_conn(), "/i", "localhost", 80, "10.9.0.1", 100)
    elif kind == "add" and not any(p.name == f"10.0.0.{arg}:80" for p in up.peers):
        up.add_server({"server": f"10.0.0.{arg}:80"}, has_resolver=False)
    elif kind == "remove" and arg < len(up.peers) and len(up.peers) > 1:
        up.remove_server(up.peers[arg].id)
    elif kind == "reset":
        up.reset_statistics()
        node.stream.upstreams["db"].reset_statistics()
    elif kind == "offset":
        node.clock.offset_ms = float(arg)


def _check(bodies, node) -> None:
    now, clock = node.env.now, node.clock
    stream_ups = render.stream_upstreams(node)
    for version, fields in VIEWS:
        for up in node.upstreams.values():
            reused = bodies.upstream(up, version, now, clock, fields)
            assert reused == orjson.dumps(render.filter_fields(render.upstream(up, version, now, clock), fields))
        for up in stream_ups.values():
            reused = bodies.stream_upstream(up, version, now, clock, fields)
            expected = render.filter_fields(render.stream_upstream(up, version, now, clock), fields)
            assert reused == orjson.dumps(expected)
    for fields in (None, "", "zone,peers"):
        collection = bodies.upstreams(node.upstreams, 9, now, clock, fields)
        assert collection == orjson.dumps(render.filter_members(render.upstreams(node, 9), fields))
        collection = bodies.upstreams(stream_ups, 9, now, clock, fields, stream=True)
        assert collection == orjson.dumps(render.filter_members(render.stream_upstreams_of(node, 9), fields))


@settings(max_examples=30, deadline=None)
@given(start=st.floats(min_value=0.0, max_value=6000.0), steps=st.lists(STEP, min_size=1, max_size=12))
def test_a_reused_body_always_equals_a_fresh_rendering(start, steps):
    cl, node = build(WORLD, start)
    bodies = render.UpstreamBodies()
    _check(bodies, node)
    for step in steps:
        _apply(cl, node, bodies, step)
        _check(bodies, node)


def test_bodies_checked_after_every_event_of_six_seconds_are_never_stale():
    """Also shows the property above is not vacuous: bodies are reused, peers pass through
    down-ish states, and the queue fills, overflows and times out."""
    cl, node = build(WORLD)
    bodies = render.UpstreamBodies()
    seen = set()
    queued = node.upstreams["queued"]
    queue_lengths = set()
    for t in range(50, 6000, 50):
        _run_checking(node, bodies, t)
        seen |= {p.state for p in node.upstreams["backend"].peers}
        seen |= {p.state for p in node.stream.upstreams["db"].peers}
        queue_lengths.add(queued.queue_len)
    assert bodies.hits > 1000
    assert {"up", "unavail", "unhealthy"} <= seen
    assert queue_lengths >= {0, 1, 2}
    assert queued.overflows > 0


def test_a_down_server_with_an_open_unavail_period_shows_downtime_growing():
    cl, node = build(QUIET, 100, start_workloads=False)
    client = TestClient(create_app(node, write=True))
    up = node.upstreams["backend"]
    up.peers[0].note_failure(100.0)
    up.patch_server(0, {"down": True})
    got = peers(client)[0]
    assert (got["state"], got["downtime"]) == ("down", 0)
    cl.run(400)
    got = peers(client)[0]
    assert (got["state"], got["downtime"]) == ("down", 300)
