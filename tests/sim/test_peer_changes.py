"""A peer's change key (``sim.upstream.peer.CHANGE_KEY``) moves with everything a peer shows.

The API keeps each peer's encoded object and reuses it while the peer's change key is the same
(``api.render.UpstreamBodies``), so the key must move whenever any of the peer's state does:
counters, state, failures, health checks, slow start, servers patched, added or removed, and
statistics reset. These tests step a busy node one event at a time and compare the key with
every attribute of every peer (the balancer's own working state aside).
"""

from __future__ import annotations

from sim.cluster import cluster, scenario
from sim.upstream.peer import CHANGE_KEY

WORLD = """
seed: 5
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend {
      zone backend 64k;
      server 10.0.0.1:80 max_fails=1 fail_timeout=1s;
      server 10.0.0.2:80 max_fails=2 fail_timeout=1s slow_start=1s;
      server 10.0.0.3:80 max_conns=2 max_fails=0;
      server 10.0.0.4:80 max_fails=0;
      server 10.0.0.5:80 backup;
      queue 4 timeout=100ms;
      keepalive 2;
    }
    server {
      listen 80;
      location / {
        proxy_pass http://backend;
        proxy_next_upstream error timeout http_502;
        health_check interval=300ms fails=1 passes=1;
      }
    }
  }
backend_defaults:
  service_time: {dist: exponential, mean: 15}
  status_mix: {200: 0.88, 404: 0.04, 502: 0.08}
workloads:
  - rate: 300
faults:
  - {at: 600ms, action: backend_down, target: "10.0.0.1:80", duration: 900ms}
  - {at: 1200ms, action: backend_down, target: "10.0.0.2:80", duration: 700ms}
"""

#: What the balancer changes on every selection and the API never shows.
BALANCER_STATE = {"effective_weight", "current_weight", "_ramp_start", "accessed"}


def _state(p) -> dict:
    return {k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in vars(p).items()
            if k not in BALANCER_STATE}


def _key(p) -> tuple:
    return tuple(getattr(p, name) for name in CHANGE_KEY)


class Watch:
    """The key and the state of every peer, compared at each look."""

    def __init__(self, up):
        self.up = up
        self.seen: dict[int, tuple] = {}
        self.unchanged = self.changed = 0
        self.states: set[str] = set()

    def look(self, now: float) -> None:
        for p in self.up.peers:
            # what the API reads: a peer's state at ``now`` may close a period that ran out
            self.states.add(p.state_at(now))
            p.downtime_at(now)
            key, state = _key(p), _state(p)
            before = self.seen.get(id(p))
            if before is not None and before[0] is p:
                if before[1] == key:
                    assert before[2] == state, f"peer {p.id} changed with the same change key {key}"
                    self.unchanged += 1
                else:
                    self.changed += 1
            self.seen[id(p)] = (p, key, state)


def _run(cl, node, watch: Watch, until: float) -> None:
    env = node.env
    while env.peek() <= until:
        env.step()
        watch.look(env.now)
    cl.run(until)
    watch.look(env.now)


def _world():
    """The busy node of WORLD, its upstream, and a watch on that upstream's peers."""
    cl = cluster.Cluster(scenario.loads(WORLD, filename="t.yaml"))
    node = cl.nodes["node1"]
    up = node.upstreams["backend"]
    return cl, node, up, Watch(up)


def test_the_change_key_moves_with_every_change_traffic_faults_and_checks_make():
    cl, node, up, watch = _world()
    _run(cl, node, watch, 2500)
    # not vacuous: most looks find a peer as it was, and many find it changed
    assert watch.unchanged > 3 * watch.changed > 3000
    assert sum(p.fails for p in up.peers) > 0 and sum(p.hc_fails for p in up.peers) > 0
    assert {"up", "unhealthy", "unavail"} <= watch.states, watch.states


def test_the_change_key_moves_with_servers_patched_added_removed_and_reset():
    cl, node, up, watch = _world()
    _run(cl, node, watch, 300)
    changes = [
        lambda: up.patch_server(up.peers[0].id, {"down": True}),
        lambda: up.patch_server(up.peers[0].id, {"down": False}),
        lambda: up.patch_server(up.peers[1].id, {"drain": True}),
        lambda: up.patch_server(up.peers[2].id, {"weight": 7, "max_fails": 0, "max_conns": 5}),
        lambda: up.add_server({"server": "10.0.0.9:80"}, has_resolver=False),
        lambda: up.remove_server(up.peers[3].id),
        up.reset_statistics,
        lambda: up.peers[0].note_failure(node.env.now),
    ]
    for i, change in enumerate(changes):
        before = {id(p): _key(p) for p in up.peers}
        change()
        for p in up.peers:
            if id(p) in before and _state(p) != watch.seen[id(p)][2]:
                assert _key(p) != before[id(p)], f"change {i}: peer {p.id} moved with the same key"
        watch.look(node.env.now)
        _run(cl, node, watch, node.env.now + 150)


def test_a_change_made_behind_the_counters_back_is_caught():
    cl, node, up, watch = _world()
    _run(cl, node, watch, 200)
    up.peers[3].fails += 1  # as a model change that forgot ``changes`` would leave it
    try:
        watch.look(node.env.now)
    except AssertionError as exc:
        assert "same change key" in str(exc)
    else:
        raise AssertionError("the watch did not see the change")
