"""Every endpoint of every API version, served for one simulated node through TestClient.

A node with every kind of object (zoned and static upstreams, a cache, keyval, limit_req and
limit_conn zones, a resolver, location zones, a stream block with zone_sync) is walked endpoint by
endpoint from ``api/versions.py``; each answer must have the endpoint's success status and a body
valid against that version's JSON Schema. Then: field sets per version, ``fields=``, both slash
forms, HEAD, the GET fast path against plain FastAPI, and ``render.node_state``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from api import render
from api import versions as V
from api.app import create_app
from sim.cluster import cluster, scenario

FULL = """
seed: 11
nodes: 2
nginx_conf_inline: |
  worker_processes 2;
  http {
    resolver 10.0.0.53 valid=30s status_zone=dns;
    proxy_cache_path /tmp/clustersim-test-cache keys_zone=cache1:1m max_size=10m;
    keyval_zone zone=kv:64k timeout=60s sync;
    limit_req_zone $binary_remote_addr zone=perip:1m rate=1000r/s;
    limit_conn_zone $binary_remote_addr zone=conns:1m;
    upstream backend {
      zone backend 64k;
      server 10.0.0.1:80;
      server 10.0.0.2:80 max_conns=50;
      server 10.0.0.3:80 backup;
      queue 10 timeout=5s;
    }
    upstream unused { zone unused 64k; server 10.0.0.4:80; }
    upstream static_one { server 10.0.0.9:80; }
    server {
      listen 80;
      status_zone front;
      location / {
        status_zone loc;
        proxy_pass http://backend;
        limit_req zone=perip burst=50;
        limit_conn conns 100;
      }
      location /cached { proxy_cache cache1; proxy_pass http://backend; }
      location /api { api write=on; status_zone apiloc; }
    }
    server { listen 443 ssl; status_zone secure; location / { return 200; } }
  }
  stream {
    keyval_zone zone=skv:64k timeout=60s sync;
    limit_conn_zone $binary_remote_addr zone=sconns:1m;
    upstream db { zone db 64k; server 10.0.1.1:5432; server 10.0.1.2:5432; }
    upstream sstatic { server 10.0.1.9:5432; }
    server { listen 5432; status_zone tcp; proxy_pass db; limit_conn sconns 10; }
    server { listen 9000; zone_sync; zone_sync_server 127.0.0.11:9000; zone_sync_server 127.0.0.12:9000; }
  }
workloads:
  - rate: 50
    paths: {list: ["/a", "/cached/x"]}
"""

NO_STREAM = """
seed: 5
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server { listen 80; location / { proxy_pass http://backend; } location /api { api; } }
  }
workloads:
  - rate: 20
"""

#: The object each path parameter names on the FULL node, by the collection it is in.
NAMES = {
    "/slabs/": "kv",
    "/http/server_zones/": "front",
    "/http/location_zones/": "loc",
    "/http/caches/": "cache1",
    "/http/limit_conns/": "conns",
    "/http/limit_reqs/": "perip",
    "/http/keyvals/": "kv",
    "/http/upstreams/": "backend",
    "/stream/server_zones/": "tcp",
    "/stream/limit_conns/": "sconns",
    "/stream/keyvals/": "skv",
    "/stream/upstreams/": "db",
    "/resolvers/": "dns",
    "/workers/": "0",
}


def build(text: str, run_ms: float = 3000):
    cl = cluster.Cluster(scenario.loads(text, filename="t.yaml"))
    cl.run(run_ms)
    return cl, cl.nodes["node1"]


def concrete(template: str, server_id: int | None = None) -> str:
    """A request path for an endpoint template of versions.ENDPOINTS."""
    path = template
    if "{" in path:
        head = path[: path.index("{")]
        path = path.replace("{upstream}", NAMES[head]).replace("{zone}", NAMES.get(head, ""))
        path = path.replace("{worker_id}", NAMES["/workers/"])
        path = path.replace("{server_id}", str(server_id))
    return path


def body_for(endpoint: V.Endpoint, version: int) -> bytes | None:
    """A valid request body for the modifying endpoints the walk calls."""
    if endpoint.method in ("GET", "DELETE"):
        return None
    if "/servers/" in endpoint.path:
        if endpoint.method == "PATCH":
            return b'{"weight":2}'
        port = 5432 if endpoint.path.startswith("/stream/") else 80
        return json.dumps({"server": f"10.9.{version}.1:{port}"}).encode()
    return json.dumps({f"k{version}": "2" if endpoint.method == "PATCH" else "1"}).encode()


def validate(version: int, schema_name: str, body) -> list[str]:
    validator = Draft202012Validator(V.object_schema(version, schema_name))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


@pytest.fixture(scope="module")
def full():
    cl, node = build(FULL)
    return cl, node, TestClient(create_app(node))


# --------------------------------------------------------------------------------------------------
# The walk


@pytest.mark.parametrize("version", V.VERSIONS)
def test_every_endpoint_of_the_version_answers_its_success_status_with_a_valid_body(version):
    cl, node = build(FULL, 2000)
    client = TestClient(create_app(node))
    server_ids: dict[str, int] = {}
    for ep in V.endpoints_for(version):
        side = ep.path.split("/")[1]
        path = f"/api/{version}" + concrete(ep.path, server_ids.get(side))
        r = client.request(ep.method, path, content=body_for(ep, version))
        assert r.status_code == ep.success, (ep.method, path, r.text)
        if ep.method == "POST" and "/servers/" in ep.path:
            server_ids[side] = r.json()["id"]
        if ep.body is not None:
            assert r.headers["content-type"] == "application/json"
            assert validate(version, ep.body, r.json()) == [], (ep.method, path)
        else:
            assert r.content == b""


@pytest.mark.parametrize("version", V.VERSIONS)
def test_endpoints_the_version_does_not_have_answer_path_not_found(version, full):
    _, _, client = full
    missing = [ep for ep in V.ENDPOINTS if not ep.exists_in(version)]
    assert bool(missing) == (version < 9)
    for ep in missing:
        r = client.request(ep.method, f"/api/{version}" + concrete(ep.path, 0), content=b"{}")
        assert r.status_code == 404, (ep.method, ep.path)
        assert r.json()["error"]["code"] == "PathNotFound"


def test_api_root_lists_the_versions_and_each_version_what_the_node_has(full):
    _, _, client = full
    assert client.get("/api/").json() == list(V.VERSIONS)
    assert client.get("/api/3/").json() == ["nginx", "processes", "connections", "slabs", "http", "stream",
                                            "ssl"]
    assert client.get("/api/9/").json() == ["nginx", "processes", "connections", "slabs", "http", "stream",
                                            "resolvers", "ssl", "workers", "license"]
    assert client.get("/api/6/http/").json() == ["requests", "server_zones", "location_zones", "caches",
                                                 "limit_conns", "limit_reqs", "keyvals", "upstreams"]
    assert client.get("/api/9/stream/").json() == ["server_zones", "limit_conns", "keyvals", "zone_sync",
                                                   "upstreams"]
    _, plain = build(NO_STREAM, 500)
    plain_client = TestClient(create_app(plain))
    assert plain_client.get("/api/9/").json() == ["nginx", "processes", "connections", "slabs", "http",
                                                  "resolvers", "ssl", "workers", "license"]


def test_an_older_version_policy_serves_only_its_versions(full):
    _, node, _ = full
    client = TestClient(create_app(node, version_policy=3))
    assert client.get("/api").json() == [1, 2, 3]
    assert client.get("/api/3/nginx").status_code == 200
    assert client.get("/api/4/nginx").json()["error"]["code"] == "UnknownVersion"


# --------------------------------------------------------------------------------------------------
# Field sets per version


def _peer(client, version: int) -> dict:
    return client.get(f"/api/{version}/http/upstreams/backend").json()["peers"][0]


def test_a_used_peer_has_the_fields_of_its_version_in_real_output_order(full):
    _, _, client = full
    v3, v7, v8, v9 = (_peer(client, v) for v in (3, 7, 8, 9))
    assert "codes" not in v3["responses"] and "codes" in v7["responses"]
    assert list(v7["responses"]) == ["1xx", "2xx", "3xx", "4xx", "5xx", "codes", "total"]
    assert "response_time_hist" not in v8 and "response_time_hist" in v9
    assert all("ssl" not in p for p in (v3, v7, v8, v9))  # plain-HTTP upstream: no peer ssl
    assert list(v9) == ["id", "server", "name", "backup", "weight", "state", "active", "requests",
                        "header_time", "response_time", "response_time_hist", "responses", "sent", "received",
                        "fails", "unavail", "health_checks", "downtime", "selected"]
    assert list(v9["response_time_hist"]["buckets"]) == list(V.fields("response_time_hist_buckets", 9))
    assert v9["response_time_hist"]["count"] == v9["responses"]["total"]


def test_an_unused_peer_has_no_times_and_max_conns_only_when_set(full):
    _, _, client = full
    unused = client.get("/api/9/http/upstreams/unused").json()["peers"][0]
    assert unused["requests"] == 0
    assert not {"header_time", "response_time", "response_time_hist", "selected", "max_conns"} & set(unused)
    limited = client.get("/api/9/http/upstreams/backend").json()["peers"][1]
    assert limited["max_conns"] == 50


def test_upstream_has_queue_only_when_configured_and_keys_in_real_order(full):
    _, _, client = full
    backend = client.get("/api/9/http/upstreams/backend").json()
    assert list(backend) == ["peers", "keepalive", "queue", "zombies", "zone"]
    assert backend["queue"] == {"size": 0, "max_size": 10, "overflows": 0}
    unused = client.get("/api/9/http/upstreams/unused").json()
    assert list(unused) == ["peers", "keepalive", "zombies", "zone"]


def test_server_zone_codes_from_v7_and_ssl_from_v8_only_with_a_tls_listener(full):
    _, _, client = full
    assert "codes" not in client.get("/api/6/http/server_zones/front").json()["responses"]
    assert "codes" in client.get("/api/7/http/server_zones/front").json()["responses"]
    assert "ssl" not in client.get("/api/7/http/server_zones/secure").json()
    secure = client.get("/api/8/http/server_zones/secure").json()
    assert list(secure["ssl"]) == list(V.fields("zone_ssl", 8))
    assert list(secure["ssl"]["verify_failures"]) == ["no_cert", "expired_cert", "revoked_cert", "other"]
    assert "ssl" not in client.get("/api/8/http/server_zones/front").json()


def test_ssl_has_three_counters_until_v7_and_the_detailed_ones_from_v8(full):
    _, _, client = full
    assert list(client.get("/api/7/ssl").json()) == ["handshakes", "handshakes_failed", "session_reuses"]
    v8 = client.get("/api/8/ssl").json()
    assert list(v8) == list(V.fields("ssl", 8))
    assert list(v8["verify_failures"]) == list(V.fields("ssl_verify_failures", 8))


def test_cache_has_every_block_and_max_size_when_configured(full):
    _, _, client = full
    cache = client.get("/api/9/http/caches/cache1").json()
    assert list(cache) == list(V.fields("http_cache", 9))
    assert cache["max_size"] == 10 * 1024 * 1024
    assert cache["miss"]["responses"] > 0


def test_workers_are_an_array_whose_counters_add_up_to_the_node(full):
    _, _, client = full
    workers = client.get("/api/9/workers").json()
    connections = client.get("/api/9/connections").json()
    assert [w["id"] for w in workers] == [0, 1]
    # the /connections request itself was accepted after /workers answered
    assert sum(w["connections"]["accepted"] for w in workers) + 1 == connections["accepted"]


# --------------------------------------------------------------------------------------------------
# fields=, slashes, HEAD, JSON form


def test_fields_keeps_the_named_top_level_fields_in_object_order(full):
    _, _, client = full
    assert list(client.get("/api/9/nginx?fields=ppid,version,nope").json()) == ["version", "ppid"]
    assert client.get("/api/9/nginx?fields=").json() == {}
    zones = client.get("/api/9/http/server_zones?fields=requests").json()
    assert set(zones) == {"front", "secure"} and all(list(z) == ["requests"] for z in zones.values())
    assert client.get("/api/9/http/upstreams/?fields=").json() == {"backend": {}, "unused": {}}
    assert list(client.get("/api/9/http/upstreams/backend?fields=zone,peers").json()) == ["peers", "zone"]
    workers = client.get("/api/9/workers?fields=pid").json()
    assert [list(w) for w in workers] == [["pid"], ["pid"]]


def test_fields_on_keyvals_means_something_only_when_empty(full):
    _, _, client = full
    client.post("/api/9/http/keyvals/kv", content=b'{"fieldtest":"1"}')
    assert client.get("/api/9/http/keyvals/?fields=").json() == {"kv": {}}
    assert client.get("/api/9/http/keyvals/?fields=other").json()["kv"]["fieldtest"] == "1"
    assert client.get("/api/9/http/keyvals/kv?key=fieldtest").json() == {"fieldtest": "1"}


@pytest.mark.parametrize(
    "path",
    ["/api", "/api/9", "/api/9/nginx", "/api/9/http", "/api/9/http/upstreams",
     "/api/9/http/upstreams/backend", "/api/9/http/upstreams/backend/servers",
     "/api/9/http/upstreams/backend/servers/0", "/api/9/slabs", "/api/9/stream/zone_sync",
     "/api/9/workers/1"],
)
def test_both_slash_forms_answer_the_same_without_redirect(path):
    _, node = build(FULL, 500)
    client = TestClient(create_app(node, api_prefix="/status"), follow_redirects=False)
    path = path.replace("/api", "/status", 1)  # not the node's api location: not counted as traffic
    doubled_path = path.replace("/", "//").replace("//", "/", 1)
    plain, slashed, doubled = client.get(path), client.get(path + "/"), client.get(doubled_path)
    assert plain.status_code == slashed.status_code == doubled.status_code == 200
    assert plain.content == slashed.content == doubled.content


def test_head_is_answered_like_get_without_a_body(full):
    _, _, client = full
    r = client.head("/api/9/http/upstreams/backend")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "application/json"
    assert client.head("/api/9/nope").status_code == 404


def test_bodies_are_compact_json(full):
    _, _, client = full
    for path in ("/api/9/nginx", "/api/9/http/upstreams/backend", "/api/9/nope"):
        text = client.get(path).text
        assert json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) == text


def test_paths_outside_the_api_get_nginx_not_found_page(full):
    _, _, client = full
    r = client.get("/apix/9/nginx")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "<center><h1>404 Not Found</h1></center>" in r.text


def test_the_api_location_of_the_configuration_is_the_prefix():
    text = FULL.replace("location /api {", "location /plus-api {")
    _, node = build(text, 200)
    client = TestClient(create_app(node))
    assert client.get("/plus-api/9/nginx").status_code == 200
    assert client.get("/api/9/nginx").status_code == 404


# --------------------------------------------------------------------------------------------------
# Two ways to the same handlers


@pytest.mark.parametrize("version", [3, 9])
def test_the_get_fast_path_answers_exactly_what_fastapi_answers(version):
    _, node = build(FULL, 1500)
    fast = TestClient(create_app(node, api_prefix="/status"))
    slow = TestClient(create_app(node, api_prefix="/status", fast_get=False))
    paths = [concrete(ep.path, 0) for ep in V.endpoints_for(version) if ep.method == "GET"]
    paths += ["/nope/", "/http/upstreams/static_one/", "/http/upstreams/nope/servers/x/", "/workers/7/",
              "/http/keyvals/kv/?key=missing", "/nginx?fields=version"]
    for path in paths:
        a, b = fast.get(f"/status/{version}{path}"), slow.get(f"/status/{version}{path}")
        assert a.status_code == b.status_code, path
        ja, jb = a.json(), b.json()
        if isinstance(ja, dict):
            ja.pop("request_id", None)
            jb.pop("request_id", None)
            ja.pop("timestamp", None)
            jb.pop("timestamp", None)
        assert ja == jb, path


class _Client:
    client_ip, client_port = "127.0.0.1", 40000


@pytest.mark.parametrize("version", [3, 9])
def test_answer_get_gives_the_live_server_what_the_app_answers(version):
    """The live server takes a GET it counted to ``ApiApp.answer_get``; anything it does not
    know there goes through the app as ASGI (``call_asgi``). Both give the same status, headers
    and body for every GET endpoint and the errors around them."""
    import asyncio

    from api.live.asgi import call_asgi
    from api.live.request import HttpRequest

    _, node = build(FULL, 1500)
    app = create_app(node, api_prefix="/status")
    paths = [concrete(ep.path, 0) for ep in V.endpoints_for(version) if ep.method == "GET"]
    paths += ["/nope/", "/http/upstreams/static_one/", "/http/upstreams/nope/servers/x/", "/workers/7/",
              "/http/keyvals/kv/?key=missing", "/nginx?fields=version", "/stream/zone_sync/"]
    known = 0

    async def both(target: str):
        path, _, query = target.partition("?")
        direct = await app.answer_get("GET", path, query.encode(), 4242)
        req = HttpRequest("GET", target, "HTTP/1.1", [(b"host", b"node1")], True)
        req.path = path
        through = await call_asgi(app, _Client(), req, ("127.0.0.1", 80), {"nginx.pid": 4242, "nginx.counted": True})
        return direct, through

    for path in paths:
        direct, through = asyncio.run(both(f"/status/{version}{path}"))
        if direct is None:
            continue  # not in the GET table: the live server asks the app
        known += 1
        assert (direct[0], list(direct[1])) == (through[0], through[1]), path
        ja, jb = json.loads(direct[2]), json.loads(through[2])
        if isinstance(ja, dict) and "error" in ja:
            assert ja.pop("request_id") != jb.pop("request_id"), path  # one drawn per answer
        assert ja == jb, path
    assert known >= len(paths) - 2  # all but the paths outside any endpoint's template


# --------------------------------------------------------------------------------------------------
# node_state and the render module


_STATE_SCHEMAS = {
    "nginx": "nginx", "processes": "processes", "connections": "connections", "ssl": "ssl", "slabs": "slabs",
    "resolvers": "resolvers", "workers": "workers", "license": "license",
}
_HTTP_SCHEMAS = {
    "requests": "http_requests", "server_zones": "http_server_zones", "location_zones": "http_location_zones",
    "caches": "http_caches", "limit_conns": "http_limit_conns", "limit_reqs": "http_limit_reqs",
    "keyvals": "keyval_zones", "upstreams": "http_upstreams",
}
_STREAM_SCHEMAS = {
    "server_zones": "stream_server_zones", "limit_conns": "stream_limit_conns", "keyvals": "keyval_zones",
    "zone_sync": "zone_sync", "upstreams": "stream_upstreams",
}


@pytest.mark.parametrize("version", [1, 3, 5, 9])
def test_node_state_holds_every_get_able_object_valid_for_its_version(version, full):
    _, node, client = full
    state = render.node_state(node, version)
    top = [name for name in render.root_entries(node, version)]
    assert list(state) == top
    assert list(state["http"]) == render.http_entries(node, version)
    assert list(state["stream"]) == render.stream_entries(node, version)
    for name, schema in _STATE_SCHEMAS.items():
        if name in state:
            assert validate(version, schema, state[name]) == [], name
    for group, schemas in (("http", _HTTP_SCHEMAS), ("stream", _STREAM_SCHEMAS)):
        for name, part in state[group].items():
            assert validate(version, schemas[name], part) == [], (group, name)


def test_node_state_counts_nothing(full):
    _, node, _ = full
    before = node.connections_accepted, node.requests_total
    first = render.node_state(node)
    second = render.node_state(node)
    assert (node.connections_accepted, node.requests_total) == before
    assert first == second


def test_render_module_imports_no_web_framework():
    tree = ast.parse(Path(render.__file__).read_text(encoding="utf-8"))
    imported = {n.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for n in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"fastapi", "starlette", "httpx", "uvicorn", "pydantic"}


def test_histogram_buckets_follow_the_models_bounds():
    from sim.upstream.upstream import HIST_BOUNDS

    keys = list(render._hist_buckets(list(range(len(HIST_BOUNDS)))))
    assert keys == [str(b) if b != float("inf") else "inf" for b in HIST_BOUNDS]
    assert keys == list(V.fields("response_time_hist_buckets", 9))
