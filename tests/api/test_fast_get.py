"""GETs answered in front of FastAPI's middleware stack (``api.app.ApiApp``) fail as FastAPI would.

An unexpected exception in a handler reached through the fast path gets nginx's HTML 500 page,
like one reached through FastAPI, and is still raised to the server; the request is counted with
its 500. A path the GET table does not know still goes through FastAPI.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api import render
from api.app import create_app
from sim.cluster import cluster, scenario

QUIET = """
seed: 1
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server {
      listen 80;
      status_zone front;
      location / { proxy_pass http://backend; }
      location /api { api; }
    }
  }
"""


def _node():
    cl = cluster.Cluster(scenario.loads(QUIET, filename="t.yaml"), start_workloads=False)
    return cl.nodes["node1"]


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("fast_get", [True, False])
def test_an_unexpected_error_gets_nginx_500_page_and_reaches_the_server(monkeypatch, fast_get):
    node = _node()
    monkeypatch.setattr(render.UpstreamBodies, "upstream", _boom)
    quiet = TestClient(create_app(node, fast_get=fast_get), raise_server_exceptions=False)
    r = quiet.get("/api/9/http/upstreams/backend")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/html")
    assert b"<center><h1>500 Internal Server Error</h1></center>" in r.content
    with pytest.raises(RuntimeError, match="boom"):
        TestClient(create_app(node, fast_get=fast_get)).get("/api/9/http/upstreams/backend")


def test_the_failed_request_is_counted_with_its_500():
    node = _node()
    client = TestClient(create_app(node), raise_server_exceptions=False)
    client.get("/api/9/nginx")
    before = dict(zip(("1xx", "2xx", "3xx", "4xx", "5xx"), node.server_zones["front"].responses, strict=True))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render.UpstreamBodies, "upstream", _boom)
        client.get("/api/9/http/upstreams/backend")
    after = dict(zip(("1xx", "2xx", "3xx", "4xx", "5xx"), node.server_zones["front"].responses, strict=True))
    assert after["5xx"] == before["5xx"] + 1
    assert after["2xx"] == before["2xx"]


def test_a_path_the_table_does_not_know_is_answered_by_fastapi():
    client = TestClient(create_app(_node()))
    r = client.get("/api/9/http/no_such_thing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "PathNotFound"
    r = client.get("/elsewhere")
    assert (r.status_code, r.headers["content-type"].split(";")[0]) == (404, "text/html")
