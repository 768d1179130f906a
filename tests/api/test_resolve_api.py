"""Resolved servers through the API: parent and children in ``.../servers/``, the peers they
give, the errors that guard a resolved child, and the resolver zone counting the queries."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from sim.cluster import cluster, scenario

NODE = """
seed: 5
nodes: 1
hosts:
  svc.example: ["10.0.5.1", "10.0.5.2"]
  new.example: ["10.0.6.1"]
nginx_conf_inline: |
  http {
    resolver 10.0.0.53 valid=10s status_zone=dns;
    upstream backend {
      zone backend 64k;
      server svc.example resolve;
      server 10.0.0.1:80;
    }
    server {
      listen 80;
      location / { proxy_pass http://backend; }
      location /api { api write=on; }
    }
  }
"""

SERVERS = "/api/9/http/upstreams/backend/servers/"


@pytest.fixture()
def client():
    cl = cluster.Cluster(scenario.loads(NODE, filename="t.yaml"))
    return TestClient(create_app(cl.nodes["node1"], write=True), client=("127.0.0.1", 5000))


def code_of(r) -> tuple[int, str, str]:
    err = r.json()["error"]
    return r.status_code, err["code"], err["text"]


def test_servers_list_the_parent_and_its_resolved_children_with_parent_and_host(client):
    conf = client.get(SERVERS).json()
    assert [(c["id"], c["server"], c.get("parent"), c.get("host")) for c in conf] == [
        (0, "svc.example:80", None, None),
        (1, "10.0.0.1:80", None, None),
        (2, "10.0.5.1:80", "0", "svc.example"),
        (3, "10.0.5.2:80", "0", "svc.example"),
    ]
    assert list(conf[2]) == ["id", "server", "weight", "max_conns", "max_fails", "fail_timeout", "slow_start",
                             "route", "backup", "down", "parent", "host"]
    peers = client.get("/api/9/http/upstreams/backend/").json()["peers"]
    assert [(p["id"], p["server"], p["name"]) for p in peers] == [
        (1, "10.0.0.1:80", "10.0.0.1:80"), (2, "10.0.5.1:80", "svc.example:80"), (3, "10.0.5.2:80", "svc.example:80")]
    assert client.get("/api/9/resolvers/dns").json()["requests"]["name"] == 1


def test_a_resolved_child_answers_the_three_immutable_errors(client):
    r = client.delete(SERVERS + "2")
    assert code_of(r) == (400, "UpstreamServerImmutable", 'server "2" not removable')
    r = client.patch(SERVERS + "2", content=b'{"server":"10.0.0.9:80"}')
    assert code_of(r) == (400, "UpstreamServerImmutable", 'server "2" address is immutable')
    r = client.patch(SERVERS + "2", content=b'{"weight":5}')
    assert code_of(r) == (400, "UpstreamServerWeightImmutable", 'server "2" weight is immutable')


def test_deleting_the_parent_removes_its_children(client):
    r = client.delete(SERVERS + "0")
    assert r.status_code == 200
    assert [c["id"] for c in r.json()] == [1]


def test_posting_a_name_adds_a_parent_whose_addresses_appear_as_children(client):
    r = client.post(SERVERS, content=b'{"server":"new.example:8080"}')
    assert r.status_code == 201, r.text
    assert r.json()["id"] == 4 and "parent" not in r.json()
    conf = client.get(SERVERS).json()
    assert [(c["id"], c["server"], c.get("parent")) for c in conf][-2:] == [
        (4, "new.example:8080", None), (5, "10.0.6.1:8080", "4")]
    assert client.get("/api/9/resolvers/dns").json()["requests"]["name"] == 2
