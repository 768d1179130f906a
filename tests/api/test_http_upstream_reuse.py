"""An upstream body rebuilt from its peers' kept pieces (``api.render.UpstreamBodies``).

When an upstream's epoch moves, only the peers whose values changed are rendered again; the
others' encoded pieces are reused. These tests pin the two things that makes safe: the values
compared are every attribute rendering a peer reads (checked by recording the reads), and the
joined body equals a fresh encoding of the whole object while traffic changes one peer at a
time. tests/api/test_upstream_bodies.py checks the reused bodies against fresh renderings
under every kind of change.
"""

from __future__ import annotations

import orjson
import pytest

from api import render, render_upstream
from sim.cluster import cluster, scenario
from sim.upstream.peer import Peer
from sim.zones.status import SslCounters

WORLD = """
seed: 11
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend {
      zone backend 64k;
      server 10.0.0.1:80 max_fails=1 fail_timeout=1s;
      server 10.0.0.2:80 slow_start=2s;
      server 10.0.0.3:80;
      server 10.0.0.4:80;
      server 10.0.0.5:80;
      server 10.0.0.6:80 backup;
    }
    server {
      listen 80;
      location / { proxy_pass http://backend; health_check interval=500ms fails=1 passes=1; }
    }
  }
  stream {
    upstream db { zone db 64k; server 10.0.1.1:5432 max_fails=1 fail_timeout=1s; server 10.0.1.2:5432; }
    server { listen 5432; proxy_pass db; }
  }
backend_defaults:
  service_time: {dist: exponential, mean: 20}
  status_mix: {200: 0.9, 502: 0.1}
workloads:
  - rate: 200
stream_workloads:
  - {name: tcp, port: 5432, rate: 20, duration: {dist: exponential, mean: 300}, bytes_sent: 512}
faults:
  - {at: 1s, action: backend_down, target: "10.0.0.1:80", duration: 1500ms}
  - {at: 1s, action: backend_down, target: "10.0.1.1:5432", duration: 1s}
"""


def _build():
    cl = cluster.Cluster(scenario.loads(WORLD, filename="t.yaml"))
    return cl, cl.nodes["node1"]


class _Recording(Peer):
    """A peer that notes the name of every attribute read on it (inside its methods too)."""

    def __getattribute__(self, name):
        if not name.startswith("__"):
            object.__getattribute__(self, "__dict__").setdefault("_read", set()).add(name)
        return object.__getattribute__(self, name)


def _reads(p, render_peer, version: int, now: float, clock) -> set[str]:
    copy = object.__new__(_Recording)
    copy.__dict__.update({k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in vars(p).items()})
    render_peer(copy, version, now, clock)
    read = copy.__dict__.pop("_read", set())
    methods = {name for name in read if callable(getattr(Peer, name, None)) or isinstance(getattr(Peer, name, None),
                                                                                          property)}
    return read - methods - {"upstream"}  # the upstream's ``single`` is in the upstream's stamp


@pytest.mark.parametrize("stream", [False, True])
def test_the_compared_values_are_every_attribute_rendering_a_peer_reads(stream):
    cl, node = _build()
    up = node.stream.upstreams["db"] if stream else node.upstreams["backend"]
    render_peer = render.stream_peer if stream else render.peer
    fields = set(render_upstream.STREAM_PEER_KEY_FIELDS if stream else render_upstream.PEER_KEY_FIELDS)
    states = set()
    for t in (0, 900, 1100, 1600, 2400, 3000, 4200):  # up, down-ish while a backend is down, recovering
        cl.run(t)
        for p in up.peers:
            states.add(p.state_at(node.env.now))
            for version in (1, 7, 8, 9):
                assert _reads(p, render_peer, version, node.env.now, node.clock) <= fields
    assert "up" in states and len(states) > 1


def test_traffic_rebuilds_a_body_from_the_peers_it_changed_only():
    cl, node = _build()
    cl.run(500)
    up = node.upstreams["backend"]
    bodies = render.UpstreamBodies()
    bodies.upstream(up, 9, node.env.now, node.clock)
    t = node.env.now
    for _ in range(200):
        t += 2.0  # about one request every 5 ms: most steps change at most one peer
        cl.run(t)
        body = bodies.upstream(up, 9, node.env.now, node.clock)
        assert body == orjson.dumps(render.upstream(up, 9, node.env.now, node.clock))
    assert bodies.misses > 50
    assert bodies.peer_renders < bodies.peer_reuses / 3


def test_a_down_ish_peer_is_rendered_again_when_only_time_moves():
    cl, node = _build()
    cl.run(1400)  # 10.0.0.1 is down since 1 s: failed, unavail or unhealthy
    up = node.upstreams["backend"]
    bodies = render.UpstreamBodies()
    first = orjson.loads(bodies.upstream(up, 9, node.env.now, node.clock))["peers"][0]
    assert first["state"] in ("unavail", "unhealthy")
    renders = bodies.peer_renders
    cl.run(node.env.now + 5.0)  # time moves; the backend is still down
    up.epoch += 1  # even if nothing else changed: the whole body is rebuilt
    body = bodies.upstream(up, 9, node.env.now, node.clock)
    assert body == orjson.dumps(render.upstream(up, 9, node.env.now, node.clock))
    assert orjson.loads(body)["peers"][0]["state"] in ("unavail", "unhealthy")
    assert bodies.peer_renders >= renders + 1  # the down-ish peer, rendered at the new ``now``


def test_a_peer_with_ssl_counters_is_rendered_every_time():
    cl, node = _build()
    cl.run(300)
    up = node.upstreams["backend"]

    counters = up.peers[2].ssl = SslCounters()
    bodies = render.UpstreamBodies()
    bodies.upstream(up, 9, node.env.now, node.clock)
    counters.handshakes = 5  # changes nothing the compared values show
    up.epoch += 1
    body = bodies.upstream(up, 9, node.env.now, node.clock)
    assert body == orjson.dumps(render.upstream(up, 9, node.env.now, node.clock))
    assert orjson.loads(body)["peers"][2]["ssl"]["handshakes"] == 5
