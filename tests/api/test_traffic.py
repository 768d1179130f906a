"""The API as a view of a running model: counters move with simulated traffic, API requests are
traffic themselves, and what the API changes (servers, keyvals, resets) changes what the model does."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api import render
from api.app import create_app
from sim.cluster import cluster, scenario

TWO_PEERS = """
seed: 31
nodes: 2
nginx_conf_inline: |
  worker_processes 2;
  http {
    keyval_zone zone=kv:64k timeout=60s sync;
    keyval_zone zone=local:64k timeout=60s;
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server {
      listen 80;
      status_zone front;
      location / { status_zone site; proxy_pass http://backend; }
      location /api { api write=on; status_zone apiloc; }
    }
  }
  stream {
    server { listen 9000; zone_sync; zone_sync_server 127.0.0.11:9000; zone_sync_server 127.0.0.12:9000; }
  }
workloads:
  - rate: 200
    nodes: [node1]
"""

LIMITED_API = """
seed: 32
nodes: 1
nginx_conf_inline: |
  http {
    limit_req_zone $binary_remote_addr zone=api:1m rate=1r/s;
    server {
      listen 80;
      status_zone front;
      location /api { api; limit_req zone=api nodelay; }
    }
  }
"""


def build(text: str, run_ms: float):
    cl = cluster.Cluster(scenario.loads(text, filename="t.yaml"))
    cl.run(run_ms)
    return cl


@pytest.fixture()
def setup():
    cl = build(TWO_PEERS, 2000)
    node = cl.nodes["node1"]
    return cl, node, TestClient(create_app(node), client=("127.0.0.1", 4000))


def test_counters_move_as_simulated_time_runs(setup):
    cl, _, c = setup
    before = c.get("/api/9/http/upstreams/backend").json()["peers"][0]
    zone_before = c.get("/api/9/http/location_zones/site").json()
    cl.run(4000)
    after = c.get("/api/9/http/upstreams/backend").json()["peers"][0]
    zone_after = c.get("/api/9/http/location_zones/site").json()
    assert before["requests"] > 200
    assert after["requests"] - before["requests"] > 300
    assert after["responses"]["total"] > before["responses"]["total"]
    assert after["received"] > before["received"] and after["sent"] > before["sent"]
    assert after["selected"] > before["selected"]  # ISO strings of the same form compare by time
    assert zone_after["requests"] - zone_before["requests"] == after["requests"] - before["requests"]
    assert c.get("/api/9/nginx").json()["timestamp"] == "2026-01-01T00:00:04.000Z"


def test_each_api_request_is_one_connection_and_one_request_of_the_api_server(setup):
    _, node, c = setup
    first = c.get("/api/9/connections").json()
    second = c.get("/api/9/connections").json()
    assert second["accepted"] == first["accepted"] + 1
    requests = c.get("/api/9/http/requests").json()["total"]
    assert c.get("/api/9/http/requests").json()["total"] == requests + 1
    api_zone = c.get("/api/9/http/location_zones/apiloc").json()
    assert api_zone["requests"] == 5 and api_zone["responses"]["codes"] == {"200": 4}
    c.get("/api/9/http/upstreams/nope")
    codes = c.get("/api/9/http/location_zones/apiloc").json()["responses"]["codes"]
    assert codes == {"200": 5, "404": 1}
    site = c.get("/api/9/http/location_zones/site").json()
    assert site["requests"] == render.location_zone(node.location_zones["site"], 9)["requests"]


def test_the_api_server_zone_counts_bytes_and_the_current_request_as_processing(setup):
    _, node, c = setup
    zone = node.server_zones["front"]
    received, sent = zone.received, zone.sent
    body = c.get("/api/9/http/server_zones/front").json()
    assert body["processing"] >= 1  # this very request
    assert zone.received > received
    assert zone.sent - sent > len(c.get("/api/9/nginx").content)


def test_limit_req_on_the_api_location_rejects_with_nginx_page_and_counts():
    cl = build(LIMITED_API, 100)
    node = cl.nodes["node1"]
    c = TestClient(create_app(node), client=("127.0.0.1", 4000))
    assert c.get("/api/9/nginx").status_code == 200
    r = c.get("/api/9/nginx")
    assert r.status_code == 503 and "503 Service Temporarily Unavailable" in r.text
    cl.run(2000)
    assert c.get("/api/9/http/limit_reqs/api").json() == {"passed": 2, "delayed": 0, "rejected": 1,
                                                          "delayed_dry_run": 0, "rejected_dry_run": 0}


def test_a_server_added_through_the_api_takes_traffic(setup):
    cl, node, c = setup
    r = c.post("/api/9/http/upstreams/backend/servers/", content=b'{"server":"10.0.0.2"}')
    assert r.status_code == 201
    assert r.json() == {"id": 1, "server": "10.0.0.2:80", "weight": 1, "max_conns": 0, "max_fails": 1,
                        "fail_timeout": "10s", "slow_start": "0s", "route": "", "backup": False,
                        "down": False}
    cl.run(4000)
    peers = c.get("/api/9/http/upstreams/backend").json()["peers"]
    assert [p["server"] for p in peers] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert peers[1]["requests"] > 150
    assert abs(peers[1]["requests"] - (peers[0]["requests"] - 400)) < 60  # round robin since t=2s


def test_patching_a_server_down_and_its_weight_changes_where_requests_go(setup):
    cl, _, c = setup
    c.post("/api/9/http/upstreams/backend/servers", content=b'{"server":"10.0.0.2:80","weight":3}')
    r = c.patch("/api/9/http/upstreams/backend/servers/0", content=b'{"down":true}')
    assert r.status_code == 200 and r.json()["down"] is True
    before = [p["requests"] for p in c.get("/api/9/http/upstreams/backend").json()["peers"]]
    cl.run(3000)
    peers = c.get("/api/9/http/upstreams/backend").json()["peers"]
    assert peers[0]["state"] == "down" and peers[0]["requests"] == before[0]
    assert peers[1]["requests"] - before[1] > 150
    c.patch("/api/9/http/upstreams/backend/servers/0/", content=b'{"down":false,"weight":1}')
    before = [p["requests"] for p in peers]
    cl.run(5000)
    delta = [p["requests"] - b for p, b in zip(c.get("/api/9/http/upstreams/backend").json()["peers"], before,
                                                  strict=True)]
    assert 2.5 < delta[1] / delta[0] < 3.5


def test_drain_shows_in_the_server_object_and_the_peer_state(setup):
    _, _, c = setup
    c.post("/api/9/http/upstreams/backend/servers", content=b'{"server":"10.0.0.2:80"}')
    r = c.patch("/api/9/http/upstreams/backend/servers/1", content=b'{"drain":true}')
    assert list(r.json())[-1] == "drain" and r.json()["drain"] is True
    assert c.get("/api/9/http/upstreams/backend").json()["peers"][1]["state"] == "draining"


def test_deleting_a_server_returns_the_rest_and_stops_its_traffic_and_ids_are_not_reused(setup):
    cl, _, c = setup
    c.post("/api/9/http/upstreams/backend/servers", content=b'{"server":"10.0.0.2:80"}')
    r = c.delete("/api/9/http/upstreams/backend/servers/0")
    assert r.status_code == 200 and [s["id"] for s in r.json()] == [1]
    cl.run(3000)
    peers = c.get("/api/9/http/upstreams/backend").json()["peers"]
    assert [p["id"] for p in peers] == [1] and peers[0]["requests"] > 150
    again = c.post("/api/9/http/upstreams/backend/servers", content=b'{"server":"10.0.0.1:80"}')
    assert again.json()["id"] == 2
    gone = c.get("/api/9/http/upstreams/backend/servers/0")
    assert gone.json()["error"]["code"] == "UpstreamServerNotFound"


def test_resets_zero_counters_and_keep_gauges(setup):
    cl, node, c = setup
    assert c.delete("/api/9/http/upstreams/backend").status_code == 204
    peer = c.get("/api/9/http/upstreams/backend").json()["peers"][0]
    assert peer["requests"] == 0 and peer["responses"]["total"] == 0
    assert c.delete("/api/9/connections").status_code == 204
    conns = c.get("/api/9/connections").json()
    assert conns["accepted"] == 1 and conns["active"] == node.connections_active + 1  # + this request
    c.delete("/api/9/http/requests")
    assert c.get("/api/9/http/requests").json()["total"] == 1
    c.delete("/api/9/http/server_zones/front")
    assert c.get("/api/9/http/server_zones/front").json()["requests"] == 1
    c.delete("/api/9/workers/0")
    assert node.workers[0].accepted <= 1
    node.crash_worker(1)
    assert c.get("/api/9/processes").json() == {"respawned": 1}
    c.delete("/api/9/processes")
    assert c.get("/api/9/processes").json() == {"respawned": 0}
    cl.run(3000)
    assert c.get("/api/9/http/upstreams/backend").json()["peers"][0]["requests"] > 100


def test_keyval_operations_change_the_zone_and_what_zone_sync_sends(setup):
    cl, node, c = setup
    other = TestClient(create_app(cl.nodes["node2"]), client=("127.0.0.1", 4000))
    sync_before = c.get("/api/9/stream/zone_sync").json()
    assert sync_before["zones"] == {"kv": {"records_pending": 0, "records_total": 0}}
    assert c.post("/api/9/http/keyvals/kv", content=b'{"user1":"blue","user2":7}').status_code == 201
    assert c.get("/api/9/http/keyvals/kv").json() == {"user1": "blue", "user2": "7"}
    zones = c.get("/api/9/stream/zone_sync").json()["zones"]
    assert zones["kv"] == {"records_pending": 2, "records_total": 2}
    assert c.patch("/api/9/http/keyvals/kv", content=b'{"user1":"green"}').status_code == 204
    assert c.patch("/api/9/http/keyvals/kv", content=b'{"user2":null}').status_code == 204
    assert c.get("/api/9/http/keyvals/kv?key=user1").json() == {"user1": "green"}
    cl.run(4000)
    sync = c.get("/api/9/stream/zone_sync").json()
    assert sync["zones"]["kv"]["records_pending"] == 0
    assert sync["status"]["msgs_out"] > sync_before["status"]["msgs_out"]
    assert sync["status"]["bytes_out"] > sync_before["status"]["bytes_out"]
    assert other.get("/api/9/http/keyvals/kv").json() == {"user1": "green"}
    assert other.get("/api/9/stream/zone_sync").json()["status"]["msgs_in"] > 0
    assert c.delete("/api/9/http/keyvals/kv").status_code == 204
    assert c.get("/api/9/http/keyvals/kv").json() == {}
    assert other.get("/api/9/http/keyvals/kv").json() == {"user1": "green"}  # DELETE acts on this node only


def test_keyval_expire_from_v5_removes_the_pair_when_it_runs_out(setup):
    cl, _, c = setup
    r = c.post("/api/9/http/keyvals/local", content=b'{"short":{"value":"x","expire":1000},"long":"y"}')
    assert r.status_code == 201 and r.content == b""
    cl.run(3500)
    assert c.get("/api/9/http/keyvals/local").json() == {"long": "y"}


def test_reload_shows_in_nginx_generation_and_load_timestamp(setup):
    cl, node, c = setup
    before = c.get("/api/9/nginx").json()
    cl.run(3000)
    node.reload()
    after = c.get("/api/9/nginx").json()
    assert after["generation"] == before["generation"] + 1
    assert after["load_timestamp"] == "2026-01-01T00:00:03.000Z"
    assert after["pid"] != before["pid"]  # new workers after a reload
