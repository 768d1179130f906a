"""``server NAME resolve`` through the node's resolver (sim.upstream.upstream, sim.zones.resolver, sim.node.node).

Each test builds a one-node world whose http block has ``resolver ... status_zone=dns`` and an
upstream with resolved servers; the scenario's ``hosts`` is what the name server answers, and
``Resolver.set_answer`` changes it at run time. Backends answer after a constant 10 ms with no
bytes unless a test says otherwise, so every time below is exact. A simpy ``run(until=t)`` stops
before the events due at ``t``: a resolution due at 10 s has happened once the run reaches 10001.
"""

from __future__ import annotations

import pytest
import yaml

from sim.cluster import cluster, scenario
from sim.core import errors
from sim.zones.resolver import DEFAULT_TTL_MS

QUIET = {"service_time": 10, "header_bytes": 0, "response_size": 0}
HOSTS = {"b.example": ["10.0.0.1", "10.0.0.2"], "static.example": ["10.0.0.5"]}


def world(upstream: str, *, resolver: str = "resolver 10.0.0.53 valid=10s status_zone=dns;",
          hosts: dict | None = None, stream: str = "", backends: dict | None = None) -> cluster.Cluster:
    conf = (
        "events {}\n"
        "http {\n"
        f"  {resolver}\n"
        f"  upstream backend {{\n    zone backend 64k;\n{upstream}\n  }}\n"
        "  server {\n    listen 80;\n    location / {\n      proxy_pass http://backend;\n    }\n  }\n"
        "}\n"
        f"{stream}"
    )
    data = {
        "seed": 3,
        "nodes": [{"name": "node1", "worker_connections": 10_000}],
        "network": {"latency_ms": 0},
        "hosts": HOSTS if hosts is None else hosts,
        "nginx_conf_inline": conf,
        "backend_defaults": QUIET,
        "backends": {addr: {**QUIET, **spec} for addr, spec in (backends or {}).items()},
    }
    return cluster.Cluster(scenario.loads(yaml.safe_dump(data), filename="t.yaml"), start_workloads=False,
                           sample=False)


def parts(cl: cluster.Cluster):
    node = cl.nodes["node1"]
    return node, node.upstreams["backend"], node.resolvers.get("dns")


def peers_of(up) -> list[tuple[int, str, str]]:
    return [(p.id, p.name, p.server) for p in up.peers]


def counted(zone) -> tuple[int, int, int, int]:
    return zone.requests["name"], zone.responses["noerror"], zone.responses["nxdomain"], zone.responses["servfail"]


# --- resolution through the resolver's zone --------------------------------------------------------


def test_resolver_zone_counts_one_query_at_start_and_one_each_time_valid_runs_out():
    cl = world("server b.example resolve;")
    _, up, zone = parts(cl)
    assert counted(zone) == (1, 1, 0, 0)
    cl.env.run(until=10_000)
    assert counted(zone) == (1, 1, 0, 0)
    cl.env.run(until=10_001)
    assert counted(zone) == (2, 2, 0, 0)
    cl.env.run(until=40_001)
    assert counted(zone) == (5, 5, 0, 0)
    assert peers_of(up) == [(1, "b.example:80", "10.0.0.1:80"), (2, "b.example:80", "10.0.0.2:80")]


def test_without_valid_the_resolver_ttl_sets_the_re_resolution_period():
    cl = world("server b.example resolve;", resolver="resolver 10.0.0.53 status_zone=dns;")
    _, _, zone = parts(cl)
    cl.env.run(until=DEFAULT_TTL_MS)
    assert zone.requests["name"] == 1
    cl.env.run(until=DEFAULT_TTL_MS + 1)
    assert zone.requests["name"] == 2


def test_two_resolved_servers_are_asked_separately_on_one_timer():
    cl = world("server b.example resolve;\nserver c.example:8080 resolve;",
               hosts={**HOSTS, "c.example": ["10.0.0.3"]})
    _, up, zone = parts(cl)
    assert zone.requests["name"] == 2
    assert [p.server for p in up.peers] == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:8080"]
    cl.env.run(until=10_001)
    assert zone.requests["name"] == 4


def test_a_static_name_without_resolve_is_resolved_once_through_the_scenario_dns_uncounted():
    cl = world("server static.example:81;")
    _, up, zone = parts(cl)
    cl.env.run(until=60_000)
    assert counted(zone) == (0, 0, 0, 0)
    assert peers_of(up) == [(0, "static.example:81", "10.0.0.5:81")]
    assert up.parents == []


# --- peers follow the DNS ---------------------------------------------------------------------------


def test_an_address_added_in_dns_becomes_a_peer_at_the_next_resolution_and_a_removed_one_leaves():
    cl = world("server b.example resolve;")
    node, up, _ = parts(cl)
    node.http_resolver.set_answer("b.example", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    cl.env.run(until=10_000)
    assert [p.id for p in up.peers] == [1, 2]
    cl.env.run(until=10_001)
    assert peers_of(up)[-1] == (3, "b.example:80", "10.0.0.3:80")
    assert [p.id for p in up.peers] == [1, 2, 3]
    node.http_resolver.set_answer("b.example", ["10.0.0.2", "10.0.0.3"])
    cl.env.run(until=20_001)
    assert [(p.id, p.server) for p in up.peers] == [(2, "10.0.0.2:80"), (3, "10.0.0.3:80")]
    assert up.tries_allowed() == 2


def test_a_peer_that_vanishes_from_dns_while_busy_is_a_zombie_until_its_request_ends():
    cl = world("server b.example resolve;", backends={"10.0.0.1:80": {"service_time": 15_000}})
    node, up, _ = parts(cl)
    done = []
    conn = node.open_conn()
    node.handle(conn, "/", "localhost", 80, "10.9.0.1", 0, lambda req: done.append((cl.env.now, req.status)))
    assert [p.active for p in up.peers] == [1, 0]
    node.http_resolver.set_answer("b.example", ["10.0.0.2"])
    cl.env.run(until=10_001)
    assert [p.server for p in up.peers] == ["10.0.0.2:80"]
    assert up.zombies == 1
    cl.env.run(until=15_001)
    assert done == [(15_000, 200)]
    assert up.zombies == 0


def test_a_name_with_no_answer_yields_no_peer_until_it_resolves():
    cl = world("server gone.example resolve;\nserver 10.0.0.9:80;")
    node, up, zone = parts(cl)
    assert counted(zone) == (1, 0, 1, 0)
    assert [p.server for p in up.peers] == ["10.0.0.9:80"]
    assert [c["server"] for c in up.servers_conf()] == ["gone.example:80", "10.0.0.9:80"]
    node.http_resolver.set_answer("gone.example", ["10.0.0.7"])
    cl.env.run(until=10_001)
    assert counted(zone) == (2, 1, 1, 0)
    assert [(p.id, p.server, p.parent) for p in up.peers] == [(1, "10.0.0.9:80", None), (2, "10.0.0.7:80", 0)]


def test_an_empty_answer_or_nxdomain_removes_the_peers_but_servfail_keeps_them():
    cl = world("server b.example resolve;")
    node, up, zone = parts(cl)
    node.http_resolver.set_answer("b.example", "servfail")
    cl.env.run(until=10_001)
    assert counted(zone) == (2, 1, 0, 1)
    assert len(up.peers) == 2
    node.http_resolver.set_answer("b.example", [])
    cl.env.run(until=20_001)
    assert counted(zone) == (3, 2, 0, 1)
    assert up.peers == []
    node.http_resolver.set_answer("b.example", ["10.0.0.2"])
    cl.env.run(until=30_001)
    assert [(p.id, p.server) for p in up.peers] == [(3, "10.0.0.2:80")]


def test_requests_go_to_the_resolved_addresses():
    cl = world("server b.example resolve;")
    node, up, _ = parts(cl)
    for _ in range(4):
        node.handle(node.open_conn(), "/", "localhost", 80, "10.9.0.1", 0, lambda req: None)
    cl.env.run(until=100)
    assert [(p.server, p.requests) for p in up.peers] == [("10.0.0.1:80", 2), ("10.0.0.2:80", 2)]


def test_srv_records_of_a_service_become_peers_with_their_own_ports():
    hosts = {"_http._tcp.svc.example": ["a.example:8080", "10.0.0.9:8081"], "a.example": ["10.0.0.8"]}
    cl = world("server svc.example service=http resolve;", hosts=hosts)
    _, up, zone = parts(cl)
    assert (zone.requests["srv"], zone.requests["name"]) == (1, 1)
    assert [(p.name, p.server, p.service) for p in up.peers] == [
        ("svc.example", "10.0.0.8:8080", "http"), ("svc.example", "10.0.0.9:8081", "http")]


def test_a_stream_upstream_resolves_through_the_stream_resolver():
    stream = (
        "stream {\n  resolver 10.0.0.53 valid=5s status_zone=sdns;\n"
        "  upstream db {\n    zone db 64k;\n    server b.example:5432 resolve;\n  }\n"
        "  server {\n    listen 5432;\n    proxy_pass db;\n  }\n}\n"
    )
    cl = world("server 10.0.0.9:80;", stream=stream)
    node = cl.nodes["node1"]
    cl.env.run(until=5_001)
    assert node.resolvers["sdns"].requests["name"] == 2
    assert node.resolvers["dns"].requests["name"] == 0
    assert [p.server for p in node.stream.upstreams["db"].peers] == ["10.0.0.1:5432", "10.0.0.2:5432"]


def test_a_reload_resolves_afresh_and_the_old_configuration_stops_asking():
    cl = world("server b.example resolve;")
    node, _, zone = parts(cl)
    cl.env.run(until=5_000)
    node.reload()
    assert zone.requests["name"] == 2
    cl.env.run(until=15_000)
    assert zone.requests["name"] == 2
    cl.env.run(until=15_001)
    assert zone.requests["name"] == 3


def test_a_crashed_node_stops_resolving():
    cl = world("server b.example resolve;")
    node, _, zone = parts(cl)
    node.crash()
    cl.env.run(until=60_000)
    assert zone.requests["name"] == 1


# --- parent and children as the API sees them -------------------------------------------------------


def test_the_parent_is_a_configured_server_and_each_address_a_child_with_parent_and_host():
    cl = world("server b.example resolve weight=2 max_fails=3;")
    _, up, _ = parts(cl)
    conf = up.servers_conf()
    assert [(c["id"], c["server"], c.get("parent"), c.get("host"), c["weight"], c["max_fails"]) for c in conf] == [
        (0, "b.example:80", None, None, 2, 3),
        (1, "10.0.0.1:80", 0, "b.example", 2, 3),
        (2, "10.0.0.2:80", 0, "b.example", 2, 3),
    ]
    assert up.peer(0).name == "b.example:80"
    assert 0 not in [p.id for p in up.peers]


def test_a_resolved_child_cannot_be_removed_nor_given_an_address_or_a_weight():
    cl = world("server b.example resolve;")
    _, up, _ = parts(cl)
    cases = (
        (lambda: up.remove_server(1), errors.UpstreamServerImmutable, 'server "1" not removable'),
        (lambda: up.patch_server(1, {"server": "10.0.0.9:80"}), errors.UpstreamServerImmutable,
         'server "1" address is immutable'),
        (lambda: up.patch_server(1, {"weight": 3}), errors.UpstreamServerWeightImmutable,
         'server "1" weight is immutable'),
    )
    for call, exc, text in cases:
        with pytest.raises(exc) as e:
            call()
        assert type(e.value) is exc
        assert e.value.text == text
    assert [(p.server, p.weight) for p in up.peers] == [("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]


def test_patching_the_parent_applies_to_its_children_and_to_children_resolved_later():
    cl = world("server b.example resolve;")
    node, up, _ = parts(cl)
    up.patch_server(0, {"weight": 4, "max_conns": 7, "down": True})
    assert [(p.weight, p.max_conns, p.down) for p in up.peers] == [(4, 7, True), (4, 7, True)]
    assert up.tries_allowed() == 0
    node.http_resolver.set_answer("b.example", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    cl.env.run(until=10_001)
    assert [(p.weight, p.max_conns, p.down) for p in up.peers][-1] == (4, 7, True)
    with pytest.raises(errors.UpstreamServerImmutable):
        up.patch_server(0, {"server": "10.0.0.9:80"})


def test_removing_the_parent_removes_its_children_and_stops_asking_for_its_name():
    cl = world("server b.example resolve;\nserver 10.0.0.9:80;")
    _, up, zone = parts(cl)
    epoch = up.epoch
    up.remove_server(0)
    assert up.epoch > epoch
    assert [c["id"] for c in up.servers_conf()] == [1]
    assert [p.server for p in up.peers] == ["10.0.0.9:80"]
    cl.env.run(until=60_000)
    assert zone.requests["name"] == 1


def test_a_server_added_by_name_is_a_parent_resolved_at_once_and_kept_up_to_date():
    cl = world("server 10.0.0.9:80;", hosts={"c.example": ["10.0.0.3", "10.0.0.4"]})
    node, up, zone = parts(cl)
    cl.env.run(until=2_000)
    parent = up.add_server({"server": "c.example:8080", "weight": 2}, has_resolver=True)
    assert (parent.id, parent.name, parent.weight) == (1, "c.example:8080", 2)
    assert [(p.id, p.server, p.parent, p.weight) for p in up.peers] == [
        (0, "10.0.0.9:80", None, 1), (2, "10.0.0.3:8080", 1, 2), (3, "10.0.0.4:8080", 1, 2)]
    assert zone.requests["name"] == 1
    with pytest.raises(errors.EntryExists):
        up.add_server({"server": "c.example:8080"}, has_resolver=True)
    node.http_resolver.set_answer("c.example", ["10.0.0.4"])
    cl.env.run(until=12_001)
    assert zone.requests["name"] == 2
    assert [p.id for p in up.peers] == [0, 3]
