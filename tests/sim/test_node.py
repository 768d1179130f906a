"""A node's own counters: connections, requests, zones, limits, lifecycle."""

import pytest

from sim.cluster import cluster, scenario

BASE = """
seed: 5
duration: 10s
nodes: 1
backends:
  "10.0.0.1:80": {service_time: 10, response_size: 1000, header_bytes: 0}
nginx_conf_inline: |
  worker_processes 2;
  http {
    limit_req_zone $remote_addr zone=perip:1m rate=1r/s;
    limit_conn_zone $remote_addr zone=conns:1m;
    keyval_zone zone=kv:64k state=kv.json timeout=1h;
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server {
      listen 80; server_name www.test; status_zone www;
      location / { proxy_pass http://backend; status_zone root; }
      location /limited { limit_req zone=perip burst=1 nodelay; return 200 "ok"; }
      location /one { limit_conn conns 1; proxy_pass http://backend; }
      location = /hello { return 200 "hello"; }
    }
  }
"""


def make(tmp_path=None, text=BASE):
    sc = scenario.loads(text, filename="node.yaml")
    cl = cluster.Cluster(sc, start_workloads=False, sample=False, state_dir=tmp_path)
    return cl, cl.nodes["node1"]


def send(node, uri, ip="10.1.1.1", conn=None, done=None):
    conn = conn or node.open_conn()
    return node.handle(conn, uri, "www.test", 80, ip, 100, done), conn


def test_return_location_answers_at_once_and_counts_in_the_server_zone():
    cl, node = make()
    req, _ = send(node, "/hello")
    assert req.status == 200 and req.resp_bytes == len("hello")
    z = node.server_zones["www"]
    assert (z.requests, z.responses[1], z.processing, z.received, z.sent) == (1, 1, 0, 100, 5)
    assert node.requests_total == 1 and node.requests_current == 0


def test_proxied_request_completes_after_connect_service_and_transfer():
    cl, node = make()
    seen = []
    req, _ = send(node, "/x", done=seen.append)
    assert node.requests_current == 1 and node.server_zones["www"].processing == 1
    cl.run(5000)
    assert seen == [req] and req.status == 200 and req.resp_bytes == 1000
    # 0.5 ms each way for the handshake, 0.5 + 100/125000 for the request, 10 ms service,
    # 0.5 + 1000/125000 back: the client latency histogram holds it
    assert node.latency.n == 1
    assert node.location_zones["root"].requests == 1 and node.location_zones["root"].responses[1] == 1


def test_keepalive_connection_goes_idle_between_requests():
    cl, node = make()
    conn = node.open_conn()
    send(node, "/hello", conn=conn)
    node.idle_conn(conn)
    assert (node.connections_active, node.connections_idle) == (0, 1)
    send(node, "/hello", conn=conn)
    assert (node.connections_active, node.connections_idle, node.connections_accepted) == (1, 0, 1)
    node.close_conn(conn)
    assert (node.connections_active, node.connections_idle) == (0, 0)


def test_connections_beyond_worker_connections_are_dropped():
    text = BASE.replace("nodes: 1", "nodes: [{name: node1, worker_connections: 2}]")
    cl, node = make(text=text)
    conns = [node.open_conn() for _ in range(6)]
    # two workers, two connections each
    assert sum(c is not None for c in conns) == 4
    assert node.connections_accepted == 6 and node.connections_dropped == 2


def test_connections_spread_over_workers():
    cl, node = make()
    for _ in range(4):
        send(node, "/hello")
    assert [w.accepted for w in node.workers] == [2, 2]
    assert [w.requests_total for w in node.workers] == [2, 2]


def test_limit_req_rejects_beyond_burst_with_503():
    cl, node = make()
    statuses = [send(node, "/limited")[0].status for _ in range(4)]
    assert statuses == [200, 200, 503, 503]
    z = node.limit_reqs["perip"]
    assert (z.passed, z.rejected) == (2, 2)
    # another client has its own bucket
    assert send(node, "/limited", ip="10.9.9.9")[0].status == 200


def test_limit_conn_holds_a_slot_until_the_response():
    cl, node = make()
    first, _ = send(node, "/one")
    second, _ = send(node, "/one")
    assert second.status == 503 and node.limit_conns["conns"].rejected == 1
    cl.run(1000)
    assert first.status == 200
    third, _ = send(node, "/one")
    assert third.status == 0 or third.status is None or not third.final  # in flight, admitted
    assert node.limit_conns["conns"].passed == 2


def test_crash_resets_clients_in_flight_and_restart_starts_from_zero():
    cl, node = make()
    seen = []
    send(node, "/x", done=seen.append)
    node.crash()
    assert node.open_conn() is None
    cl.run(1000)
    assert [r.status for r in seen] == [0]
    node.restart()
    assert node.requests_total == 0 and node.server_zones["www"].requests == 0
    assert send(node, "/hello")[0].status == 200


def test_reload_bumps_generation_and_keeps_zone_counters():
    cl, node = make()
    send(node, "/hello")
    cl.run(2000)
    node.reload()
    assert node.generation == 2 and node.load_time == 2000
    assert node.server_zones["www"].requests == 1
    assert node.requests_total == 1


def test_worker_crash_counts_a_respawn():
    cl, node = make()
    pid = node.workers[0].pid
    node.crash_worker(0)
    assert node.respawned == 1 and node.workers[0].pid != pid


def test_keyval_state_file_survives_a_crash(tmp_path):
    cl, node = make(tmp_path)
    node.keyvals["kv"].post({"a": "1"})
    node.crash()
    node.restart()
    assert node.keyvals["kv"].get() == {"a": "1"}


def test_slab_pools_follow_peers_and_keyval_use():
    cl, node = make()
    pools = node.slab_pools()
    assert set(pools) == {"backend", "kv", "perip", "conns"}
    before = pools["backend"].stats()["slots"]["512"]["used"]
    up = node.upstreams["backend"]
    up.add_server({"server": "10.0.0.2:80"}, has_resolver=False)
    assert node.slab_pools()["backend"].stats()["slots"]["512"]["used"] == before + 1
    up.remove_server(1)
    assert node.slab_pools()["backend"].stats()["slots"]["512"]["used"] == before


@pytest.mark.parametrize("uri", ["/nowhere-but-root", "/"])
def test_unknown_paths_fall_to_the_root_location(uri):
    cl, node = make()
    req, _ = send(node, uri)
    cl.run(100)
    assert req.status == 200


def test_adding_servers_until_the_upstream_zone_is_full_answers_out_of_memory():
    from sim.core import errors

    text = BASE.replace("zone backend 64k;", "zone backend 32k;")
    cl, node = make(text=text)
    up = node.upstreams["backend"]
    added = 0
    with pytest.raises(errors.UpstreamOutOfMemory, match='upstream "backend" memory exhausted'):
        for i in range(2, 1000):
            up.add_server({"server": f"10.0.{i // 250}.{i % 250}:80"}, has_resolver=False)
            added += 1
    pool = node.slab_pools()["backend"]
    assert pool.stats()["pages"]["free"] == 0 or pool.stats()["slots"]["512"]["free"] == 0
    assert pool.stats()["slots"]["512"]["used"] == added + 1  # one per peer, the configured one too
    # removing one frees room for one more
    up.remove_server(1)
    up.add_server({"server": "10.9.9.9:80"}, has_resolver=False)
