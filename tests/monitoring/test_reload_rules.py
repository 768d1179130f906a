"""What survives a reload: shared memory zones that keep name and size keep their contents."""

from sim.cluster import scenario
from sim.cluster.cluster import Cluster
from sim.conf import reader

BASE = """
http {
    resolver 10.0.0.53 valid=5s;
    upstream app {
        zone app 64k;
        server 10.0.2.1:8080;
        server 10.0.2.2:8080;
    }
    upstream dyn {
        zone dyn 64k;
        server app.internal:8080 resolve;
    }
    keyval_zone zone=flags:64k;
    limit_req_zone $binary_remote_addr zone=perip:1m rate=100r/s;
    server {
        listen 80;
        server_name www.example.com;
        status_zone www;
        location / { proxy_pass http://app; limit_req zone=perip burst=1000; }
        location /dyn { proxy_pass http://dyn; }
    }
    server { listen 8080; location /api { api write=on; } }
}
"""

SCENARIO = """
seed: 3
duration: 30s
nodes: 1
nginx_conf_inline: |
{conf}
hosts:
  app.internal: [10.0.3.1, 10.0.3.2]
backend_defaults:
  service_time: {{dist: constant, value: 5}}
workloads:
  - {{rate: 50, host: www.example.com, paths: {{count: 10}}}}
"""


def _cluster(conf: str = BASE) -> Cluster:
    text = SCENARIO.format(conf="\n".join("  " + line for line in conf.splitlines()))
    return Cluster(scenario.loads(text), sample=False)


def _conf(text: str):
    return reader.loads(text, filename="<test>")


def test_an_unchanged_upstream_keeps_its_peers_ids_and_counters_across_a_reload():
    cl = _cluster()
    cl.run(5_000)
    node = cl.nodes["node1"]
    up = node.upstreams["app"]
    before = [(p.id, p.requests) for p in up.peers]
    assert sum(n for _, n in before) > 0
    node.reload(_conf(BASE))  # the same text from another "file"
    assert node.upstreams["app"] is up
    assert [(p.id, p.requests) for p in up.peers] == before
    assert node.generation == 2 and node.load_time == 5_000


def test_a_resized_upstream_zone_starts_from_zero_with_ids_from_zero():
    cl = _cluster()
    cl.run(5_000)
    node = cl.nodes["node1"]
    old = node.upstreams["app"]
    node.reload(_conf(BASE.replace("zone app 64k;", "zone app 128k;")))
    new = node.upstreams["app"]
    assert new is not old
    assert [(p.id, p.requests) for p in new.peers] == [(0, 0), (1, 0)]
    pool = node.slab_pools()["app"]
    assert pool.size == 128 * 1024  # a new mapping, of the new size


def test_servers_added_through_the_api_are_lost_at_a_reload_and_ids_restart():
    cl = _cluster()
    cl.run(1_000)
    node = cl.nodes["node1"]
    up = node.upstreams["app"]
    peer = up.add_server({"server": "10.0.2.3:8080"}, has_resolver=True)
    assert peer.id == 2
    node.reload()
    ups = node.upstreams["app"]
    assert ups is not up
    assert [(p.id, p.server) for p in ups.peers] == [(0, "10.0.2.1:8080"), (1, "10.0.2.2:8080")]


def test_a_removed_server_still_holding_requests_is_a_zombie_of_the_reloaded_upstream():
    cl = _cluster()
    cl.run(2_000)
    node = cl.nodes["node1"]
    old = node.upstreams["app"]
    old.peers[1].active += 1  # a request in flight on the second server
    node.reload(_conf(BASE.replace("        server 10.0.2.2:8080;\n", "")))
    new = node.upstreams["app"]
    assert [p.server for p in new.peers] == ["10.0.2.1:8080"]
    assert new.zombies >= 1
    old.peers[1].active -= 1
    assert new.zombies == sum(1 for p in [*old.peers] if p.active > 0)


def test_resolved_peers_are_re_created_with_new_ids_at_a_reload():
    cl = _cluster()
    cl.run(2_000)
    node = cl.nodes["node1"]
    old = node.upstreams["dyn"]
    assert [(p.id, p.server) for p in old.peers] == [(1, "10.0.3.1:8080"), (2, "10.0.3.2:8080")]
    cl.hosts["app.internal"] = ["10.0.3.2", "10.0.3.7"]  # the name's answer changed meanwhile
    node.reload()  # the same configuration: the name is resolved afresh
    dyn = node.upstreams["dyn"]
    assert dyn is not old and not set(dyn.peers) & set(old.peers)
    assert [(p.id, p.server, p.requests) for p in dyn.peers] == [(1, "10.0.3.2:8080", 0), (2, "10.0.3.7:8080", 0)]


def test_a_renamed_server_zone_starts_from_zero_and_the_kept_one_keeps_counting():
    cl = _cluster()
    cl.run(5_000)
    node = cl.nodes["node1"]
    www = node.server_zones["www"]
    assert www.requests > 0
    node.reload(_conf(BASE))
    assert node.server_zones["www"] is www
    node.reload(_conf(BASE.replace("status_zone www;", "status_zone www_v2;")))
    assert set(node.server_zones) == {"www_v2"} and node.server_zones["www_v2"].requests == 0
    assert node.generation == 3


def test_keyval_and_limit_req_zones_that_keep_name_and_size_keep_their_contents():
    cl = _cluster()
    cl.run(2_000)
    node = cl.nodes["node1"]
    flags, perip = node.keyvals["flags"], node.limit_reqs["perip"]
    flags.post({"maintenance": "off"})
    passed = perip.passed
    assert passed > 0
    # a new rate, the same size and key: the zone (and its states) survive with the new rate
    node.reload(_conf(BASE.replace("rate=100r/s", "rate=50r/s")))
    assert node.limit_reqs["perip"] is perip and perip.rate == 50_000 and perip.passed == passed
    assert node.keyvals["flags"] is flags and flags.get() == {"maintenance": "off"}
    # a new size: new shared memory, counters from zero
    node.reload(_conf(BASE.replace("zone=perip:1m", "zone=perip:2m").replace("zone=flags:64k", "zone=flags:128k")))
    assert node.limit_reqs["perip"] is not perip and node.limit_reqs["perip"].passed == 0
    assert node.keyvals["flags"] is not flags and node.keyvals["flags"].get() == {}


STREAM = BASE.rstrip() + """
stream {
    upstream tcp {
        zone tcp 64k;
        server 10.0.4.1:5432;
        server 10.0.4.2:5432;
    }
    server { listen 5432; proxy_pass tcp; }
}
"""


def test_a_stream_upstream_follows_the_same_rule_as_http():
    cl = _cluster(STREAM)
    cl.run(1_000)
    node = cl.nodes["node1"]
    up = node.stream.upstreams["tcp"]
    up.peers[0].fails = 3  # something the zone holds, to see whether it survives
    node.reload(_conf(STREAM))
    kept = node.stream.upstreams["tcp"]
    assert kept is up and kept.peers[0].fails == 3 and [p.id for p in kept.peers] == [0, 1]
    node.reload(_conf(STREAM.replace("zone tcp 64k;", "zone tcp 128k;")))
    rebuilt = node.stream.upstreams["tcp"]
    assert rebuilt is not up and rebuilt.peers[0].fails == 0 and [p.id for p in rebuilt.peers] == [0, 1]
