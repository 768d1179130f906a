"""Every error the API answers: its HTTP status, its code, and the NGINX error object per version.

Also the read-only API, ``allow``/``deny`` around the API location, the order in which nginx
checks a request, request bodies nginx would refuse, and a hypothesis fuzz of every modifying
endpoint with malformed bodies and parameters (never a 500, always the NGINX error object).
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import sim.core.errors
import sim.zones.keyval
from api import errors as api_errors
from api import versions as V
from api.app import create_app
from sim.cluster import cluster, scenario

NODE = """
seed: 21
nodes: 1
hosts:
  svc.example: ["10.0.5.1", "10.0.5.2"]
nginx_conf_inline: |
  http {
    client_body_buffer_size 1k;
    resolver 10.0.0.53 status_zone=dns;
    keyval_zone zone=kv:64k timeout=60s;
    keyval_zone zone=forever:64k;
    keyval_zone zone=tiny:8k;
    upstream backend {
      zone backend 64k;
      server 10.0.0.1:80;
      server 10.0.0.2:80 backup;
    }
    upstream hashed { zone hashed 64k; hash $request_uri; server 10.0.0.3:80; }
    upstream static_one { server 10.0.0.9:80; }
    server {
      listen 80;
      status_zone front;
      location / { proxy_pass http://backend; }
      location /api { api write=on; }
    }
  }
  stream {
    upstream db { zone db 64k; server 10.0.1.1:5432; }
    server { listen 5432; proxy_pass db; }
  }
"""

NO_RESOLVER_NO_STREAM = """
seed: 22
nodes: 1
nginx_conf_inline: |
  http {
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server {
      listen 80;
      status_zone front;
      location /api {
        api;
        allow 127.0.0.0/8;
        allow 2001:db8::/32;
        deny 10.1.1.1;
        allow 10.1.0.0/16;
        deny all;
      }
    }
  }
"""

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def build(text: str, run_ms: float = 0):
    cl = cluster.Cluster(scenario.loads(text, filename="t.yaml"))
    cl.run(run_ms)
    return cl, cl.nodes["node1"]


@pytest.fixture()
def client():
    _, node = build(NODE)
    return TestClient(create_app(node))


def error_of(r, version: int = 9) -> dict:
    """The error detail of an NGINX error object, checked against the version's schema."""
    body = r.json()
    errors = list(Draft202012Validator(V.object_schema(version, "error")).iter_errors(body))
    assert errors == [], (body, [e.message for e in errors])
    assert body["error"]["status"] == r.status_code
    return body["error"]


# --------------------------------------------------------------------------------------------------
# Every code

BIG = json.dumps({"k": "x" * 2000})
SERVERS = "/api/9/http/upstreams/backend/servers"

CASES = [
    # (version, method, path, body, status, code, text or None)
    (9, "GET", "/api/10/nginx", None, 404, "UnknownVersion", "unknown version"),
    (9, "GET", "/api/nine/nginx", None, 404, "UnknownVersion", None),
    (9, "GET", "/api/9/nothing", None, 404, "PathNotFound", "path not found"),
    (9, "GET", "/api/9/http/upstreams/backend/extra", None, 404, "PathNotFound", None),
    (9, "PUT", "/api/9/nginx", b"{}", 405, "MethodNotSupported", "method not supported"),
    (9, "DELETE", "/api/9/nginx", None, 405, "MethodNotSupported", None),
    (9, "POST", SERVERS, b"{not json", 415, "JsonError", "json error"),
    (9, "POST", SERVERS, b"", 415, "JsonError", None),
    (9, "POST", SERVERS, b"\xff\xfe", 415, "JsonError", None),
    (9, "POST", SERVERS, b'{"server": NaN}', 415, "JsonError", None),
    (9, "POST", "/api/9/http/keyvals/kv", BIG.encode(), 413, "RequestEntityTooLarge", None),
    (5, "POST", "/api/5/http/keyvals/kv", BIG.encode(), 415, "JsonError", None),
    (9, "POST", SERVERS, b'{"server":"10.0.0.1:80"}', 409, "EntryExists", None),
    (5, "POST", "/api/5/http/upstreams/backend/servers", b'{"server":"10.0.0.1:80"}', 400,
     "UpstreamConfFormatError", None),
    (9, "GET", "/api/9/slabs/nope", None, 404, "SlabNotFound", "slab not found"),
    (9, "DELETE", "/api/9/slabs/nope", None, 404, "SlabNotFound", None),
    (9, "GET", "/api/9/http/server_zones/nope", None, 404, "ServerZoneNotFound", None),
    (9, "GET", "/api/9/http/location_zones/nope", None, 404, "LocationZoneNotFound", None),
    (9, "GET", "/api/9/http/caches/nope", None, 404, "CacheNotFound", "cache not found"),
    (9, "GET", "/api/9/http/limit_conns/nope", None, 404, "LimitConnNotFound", None),
    (9, "GET", "/api/9/http/limit_reqs/nope", None, 404, "LimitReqNotFound", None),
    (9, "GET", "/api/9/stream/limit_conns/nope", None, 404, "LimitConnNotFound", None),
    (9, "GET", "/api/9/stream/server_zones/nope", None, 404, "ServerZoneNotFound", None),
    (9, "GET", "/api/9/resolvers/nope", None, 404, "ResolverZoneNotFound", None),
    (9, "GET", "/api/9/workers/5", None, 404, "WorkerNotFound", "worker not found"),
    (9, "GET", "/api/9/workers/x", None, 404, "WorkerNotFound", None),
    (9, "GET", "/api/9/http/upstreams/nope", None, 404, "UpstreamNotFound", "upstream not found"),
    (9, "POST", "/api/9/http/upstreams/nope/servers", b"{", 404, "UpstreamNotFound", None),
    (9, "GET", "/api/9/stream/upstreams/nope", None, 404, "UpstreamNotFound", None),
    (9, "GET", "/api/9/http/upstreams/backend/servers/7", None, 404, "UpstreamServerNotFound",
     'server with ID "7" does not exist'),
    (9, "GET", "/api/9/http/upstreams/static_one", None, 400, "UpstreamStatic", "upstream is static"),
    (9, "GET", "/api/9/http/upstreams/static_one/servers", None, 400, "UpstreamStatic", None),
    (9, "DELETE", "/api/9/http/upstreams/static_one", None, 400, "UpstreamStatic", None),
    (9, "GET", SERVERS + "/abc", None, 400, "UpstreamBadServerId", "invalid server ID"),
    (9, "PATCH", "/api/9/http/upstreams/backend/servers/-1", b"{}", 400, "UpstreamBadServerId", None),
    (9, "DELETE", "/api/9/http/upstreams/backend/servers/99999999999999999999", None, 400,
     "UpstreamBadServerId", None),
    (9, "GET", "/api/9/stream/upstreams/db/servers/1x", None, 400, "UpstreamBadServerId", None),
    (9, "POST", SERVERS, b'{"a":"1"}', 400, "UpstreamConfFormatError",
     'unknown parameter "a"'),
    (9, "POST", SERVERS, b"{}", 400, "UpstreamConfFormatError",
     'missing "server" argument'),
    (9, "POST", SERVERS, b'{"server":{"a":1}}', 400, "UpstreamConfFormatError",
     "nested object or list"),
    (9, "POST", SERVERS, b'[{"server":"10.0.0.5"}]', 400,
     "UpstreamConfFormatError", None),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5","weight":"2"}', 400,
     "UpstreamConfFormatError", 'invalid "weight" value'),
    (9, "POST", "/api/9/stream/upstreams/db/servers", b'{"server":"10.0.1.5:5432","route":"a"}', 400,
     "UpstreamConfFormatError", 'unknown parameter "route"'),
    (1, "POST", "/api/1/http/upstreams/backend/servers", b'{"server":"10.0.0.5","drain":true}', 400,
     "UpstreamConfFormatError", 'unknown parameter "drain"'),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5:99999"}', 400,
     "UpstreamBadAddress", None),
    (9, "POST", SERVERS, b'{"server":"bad host"}', 400, "UpstreamBadAddress", None),
    (9, "POST", "/api/9/stream/upstreams/db/servers", b'{"server":"10.0.1.5"}', 400, "UpstreamBadAddress",
     'no port in server "10.0.1.5"'),
    (9, "POST", SERVERS, b'{"server":"svc.example:80","service":"http"}', 400,
     "UpstreamBadAddress", None),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5","weight":0}', 400,
     "UpstreamBadWeight", 'invalid "weight"'),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5","weight":100000000000000000000000}',
     400, "UpstreamBadWeight", None),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5","max_conns":-1}', 400,
     "UpstreamBadMaxConns", None),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5","max_fails":-3}', 400,
     "UpstreamBadMaxFails", None),
    (9, "POST", SERVERS, b'{"server":"10.0.0.5","fail_timeout":"10x"}', 400,
     "UpstreamBadFailTimeout", None),
    (9, "PATCH", "/api/9/http/upstreams/backend/servers/0", b'{"slow_start":"-1s"}', 400,
     "UpstreamBadSlowStart", None),
    (9, "POST", SERVERS, json.dumps({"server": "10.0.0.5", "route": "r" * 33}).encode(), 400,
     "UpstreamBadRoute", "route is too long"),
    (9, "POST", SERVERS, b'{"server":"svc.example","service":""}', 400,
     "UpstreamBadService", None),
    (9, "POST", "/api/9/http/upstreams/hashed/servers", b'{"server":"10.0.0.6","backup":true}', 400,
     "UpstreamNoBackup", 'upstream "hashed" has no backup'),
    (9, "PATCH", "/api/9/http/upstreams/backend/servers/0", b'{"server":"svc.example:80"}', 400,
     "UpstreamBadAddress", None),
    (9, "GET", "/api/9/http/keyvals/nope", None, 404, "KeyvalNotFound", "keyval not found"),
    (9, "GET", "/api/9/http/keyvals/kv?key=missing", None, 404, "KeyvalKeyNotFound", "keyval key not found"),
    (9, "PATCH", "/api/9/http/keyvals/kv", b'{"missing":"1"}', 404, "KeyvalKeyNotFound", None),
    (9, "POST", "/api/9/http/keyvals/kv", b"{}", 400, "KeyvalFormatError", "key required"),
    (9, "POST", "/api/9/http/keyvals/kv", b'{"a":[1]}', 400, "KeyvalFormatError", "invalid JSON"),
    (4, "POST", "/api/4/http/keyvals/kv", b'{"a":{"value":"1"}}', 400, "KeyvalFormatError",
     "nested object or list"),
    (9, "POST", "/api/9/http/keyvals/forever", b'{"a":{"value":"1","expire":100}}', 400, "KeyvalFormatError",
     "keyval timeout is not enabled"),
    (9, "PATCH", "/api/9/http/keyvals/kv", b'{"a":"1","b":"2"}', 400, "KeyvalFormatError",
     "only one key can be updated"),
    (9, "GET", "/api/9/stream/zone_sync", None, 404, "PathNotFound", None),
    (3, "GET", "/api/3/stream/zone_sync", None, 404, "ZoneSyncNotConfigured", "zone sync not configured"),
]


@pytest.mark.parametrize(("version", "method", "path", "body", "status", "code", "text"), CASES,
                         ids=[f"{c[5]}-{c[1]}-{c[2]}" for c in CASES])
def test_each_error_has_its_status_code_and_text(client, version, method, path, body, status, code, text):
    r = client.request(method, path, content=body)
    assert r.status_code == status, r.text
    err = error_of(r, version)
    assert err["code"] == code
    if text is not None:
        assert err["text"] == text


def test_a_duplicate_key_and_a_second_key_into_a_full_zone_are_refused(client):
    assert client.post("/api/9/http/keyvals/kv", content=b'{"a":"1","b":"2"}').status_code == 201
    r = client.post("/api/9/http/keyvals/kv", content=b'{"a":"3"}')
    assert (r.status_code, error_of(r)["code"]) == (409, "KeyvalKeyExists")
    assert error_of(r)["text"] == 'key "a" already exists'
    r = client.post("/api/9/http/keyvals/kv", content=b'{"c":"3","d":"4"}')
    assert error_of(r)["text"] == "only one key can be added"


def test_a_keyval_zone_out_of_memory_answers_413_from_v6_and_400_before(client):
    pairs = 0
    while True:
        r = client.post("/api/9/http/keyvals/tiny", content=json.dumps({f"key{pairs}": "v" * 200}).encode())
        if r.status_code != 201:
            break
        pairs += 1
    assert pairs > 0
    assert (r.status_code, error_of(r)["code"]) == (413, "RequestEntityTooLarge")
    assert 'keyval zone "tiny"' in error_of(r)["text"]
    r = client.post("/api/3/http/keyvals/tiny", content=json.dumps({"other": "v" * 200}).encode())
    assert (r.status_code, error_of(r, 3)["code"]) == (400, "KeyvalFormatError")


def test_stream_endpoints_without_stream_say_stream_not_configured_until_v3_then_path_not_found():
    _, node = build(NO_RESOLVER_NO_STREAM)
    c = TestClient(create_app(node), client=("127.0.0.1", 5000))
    for version, code in ((1, "StreamNotConfigured"), (3, "StreamNotConfigured"), (4, "PathNotFound")):
        for path in ("/stream", "/stream/upstreams", "/stream/server_zones/x",
                     "/stream/upstreams/db/servers/0/"):
            r = c.get(f"/api/{version}{path}")
            assert (r.status_code, error_of(r, version)["code"]) == (404, code), (version, path)


def test_no_resolver_refuses_a_server_given_by_name():
    _, node = build(NO_RESOLVER_NO_STREAM)
    c = TestClient(create_app(node, write=True), client=("127.0.0.1", 5000))
    r = c.post("/api/9/http/upstreams/backend/servers", content=b'{"server":"svc.example:80"}')
    assert (r.status_code, error_of(r)["code"]) == (400, "UpstreamConfNoResolver")


def test_a_service_server_address_cannot_be_patched(client):
    r = client.post(SERVERS, content=b'{"server":"svc.example","service":"http"}')
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["service"] == "http"
    r = client.patch(f"/api/9/http/upstreams/backend/servers/{sid}", content=b'{"server":"10.0.0.8:80"}')
    assert (r.status_code, error_of(r)["code"]) == (400, "UpstreamServerImmutable")


def test_every_model_error_maps_to_a_status_in_the_one_table():
    base = sim.core.errors.SimError
    model_errors = [obj for mod in (sim.core.errors, sim.zones.keyval) for obj in vars(mod).values()
                    if isinstance(obj, type) and issubclass(obj, base) and obj is not base]
    assert len(model_errors) > 30
    for cls in model_errors:
        exc = cls.__new__(cls)  # the constructors differ; only code and text matter here
        exc.text = "some text"
        err = api_errors.from_sim(exc)
        assert err.code in V.ERRORS, cls.code
        assert err.status == V.ERRORS[err.code].status
        assert err.text == "some text"


# --------------------------------------------------------------------------------------------------
# The error object


def test_versions_1_to_3_have_path_and_method_empty_on_a_modern_node_and_filled_on_an_old_one():
    _, node = build(NODE)
    modern = TestClient(create_app(node)).get("/api/3/http/upstreams/nope/").json()
    assert list(modern) == ["path", "method", "error", "request_id", "href"]
    assert (modern["path"], modern["method"]) == ("", "")
    old = TestClient(create_app(node, version_policy=3)).delete("/api/2/http/upstreams/nope").json()
    assert (old["path"], old["method"]) == ("/api/2/http/upstreams/nope", "DELETE")
    v4 = TestClient(create_app(node)).get("/api/4/http/upstreams/nope/").json()
    assert list(v4) == ["error", "request_id", "href"]
    assert v4["href"] == "https://nginx.org/en/docs/http/ngx_http_api_module.html"


def test_request_ids_are_32_hex_digits_that_repeat_with_the_seed():
    def ids():
        _, node = build(NODE)
        c = TestClient(create_app(node))
        return [c.get(f"/api/9/http/upstreams/nope{i}").json()["request_id"] for i in range(3)]

    first, second = ids(), ids()
    assert first == second
    assert len(set(first)) == 3 and all(HEX32.match(i) for i in first)


def test_unknown_version_uses_the_version_4_error_object_whatever_the_path():
    _, node = build(NODE)
    body = TestClient(create_app(node, version_policy=3)).get("/api/9/http/upstreams/").json()
    assert list(body) == ["error", "request_id", "href"]


# --------------------------------------------------------------------------------------------------
# Read-only API


def test_a_read_only_api_refuses_every_modifying_method_of_every_version():
    _, node = build(NO_RESOLVER_NO_STREAM.replace("api;", "api write=off;"))
    c = TestClient(create_app(node), client=("127.0.0.1", 5000))
    checked = 0
    for version in V.VERSIONS:
        for ep in V.endpoints_for(version):
            if ep.method == "GET" or ep.path.startswith("/stream/"):
                continue
            path = f"/api/{version}" + ep.path.replace("{upstream}", "nope").replace("{zone}", "nope")
            path = path.replace("{server_id}", "x").replace("{worker_id}", "x")
            r = c.request(ep.method, path, content=b"not json")
            assert r.status_code == 405, (ep.method, path)
            expected = {"status": 405, "text": "method disabled", "code": "MethodDisabled"}
            assert error_of(r, version) == expected
            checked += 1
    assert checked > 100


def test_write_follows_the_api_directive_unless_overridden():
    _, node = build(NO_RESOLVER_NO_STREAM)
    body = b'{"server":"10.0.0.7:80"}'
    ro = TestClient(create_app(node), client=("127.0.0.1", 5000))
    assert ro.post("/api/9/http/upstreams/backend/servers", content=body).status_code == 405
    rw = TestClient(create_app(node, write=True), client=("127.0.0.1", 5000))
    assert rw.post("/api/9/http/upstreams/backend/servers", content=body).status_code == 201
    _, writable = build(NODE)
    assert TestClient(create_app(writable, write=False)).delete("/api/9/connections").status_code == 405
    assert TestClient(create_app(writable)).delete("/api/9/connections").status_code == 204


# --------------------------------------------------------------------------------------------------
# Order of checks


def test_checks_run_in_nginx_order():
    _, node = build(NODE.replace("api write=on;", "api;"))
    c = TestClient(create_app(node))
    first = {
        "/api/10/workers/": "UnknownVersion",  # before the path
        "/api/3/workers/": "PathNotFound",  # before the method
        "/api/9/nginx": "MethodNotSupported",  # before write mode
        "/api/9/http/upstreams/nope/servers": "MethodDisabled",  # before the lookup
    }
    for path, code in first.items():
        r = c.put(path, content=b"{") if code != "MethodDisabled" else c.post(path, content=b"{")
        assert r.json()["error"]["code"] == code, path
    rw = TestClient(create_app(node, write=True))
    # the lookup before the server id, the id before the body
    for path, code in (("/api/9/http/upstreams/nope/servers/x", "UpstreamNotFound"),
                       ("/api/9/http/upstreams/backend/servers/x", "UpstreamBadServerId"),
                       ("/api/9/http/upstreams/backend/servers/9", "JsonError")):
        assert rw.patch(path, content=b"{").json()["error"]["code"] == code, path


def test_put_on_a_stream_path_without_stream_says_not_configured():
    _, node = build(NO_RESOLVER_NO_STREAM)
    c = TestClient(create_app(node), client=("127.0.0.1", 5000))
    assert c.put("/api/3/stream/upstreams/").json()["error"]["code"] == "StreamNotConfigured"
    assert c.put("/api/9/stream/upstreams/").json()["error"]["code"] == "PathNotFound"


# --------------------------------------------------------------------------------------------------
# allow / deny


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("10.1.1.1", False), ("10.2.0.1", False), ("2001:db8::5", True),
     ("::1", False), ("testclient", False)],
)
def test_allow_and_deny_of_the_api_location_apply_in_order(address, allowed):
    _, node = build(NO_RESOLVER_NO_STREAM)
    c = TestClient(create_app(node), client=(address, 5000))
    r = c.get("/api/9/nginx")
    if allowed:
        assert r.status_code == 200
    else:
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/html")
        assert "<center><h1>403 Forbidden</h1></center>" in r.text
        assert f"nginx/{node.version}" in r.text


def test_a_denied_request_counts_as_a_403_of_the_server_zone():
    _, node = build(NO_RESOLVER_NO_STREAM)
    TestClient(create_app(node), client=("10.9.9.9", 5000)).get("/api/9/nginx")
    ok = TestClient(create_app(node), client=("127.0.0.1", 5000)).get("/api/9/http/server_zones/front").json()
    assert ok["responses"]["codes"] == {"403": 1}
    assert ok["requests"] == 2 and ok["processing"] == 1


# --------------------------------------------------------------------------------------------------
# Fuzz: malformed bodies and parameters on every modifying endpoint

_MODIFYING = [ep for ep in V.ENDPOINTS if ep.method != "GET"]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
_server_keys = st.sampled_from(["server", "weight", "max_conns", "max_fails", "fail_timeout", "slow_start",
                                "route", "backup", "down", "drain", "service", "id", "parent", "host", "x"])
_bodies = st.one_of(
    st.binary(max_size=40),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(_server_keys, _json_values, max_size=4).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers() | _json_values, max_size=3)
    .map(lambda d: json.dumps(d).encode()),
)
_segments = st.one_of(st.sampled_from(["backend", "db", "kv", "skv", "0", "1", "-1", "x", "007", "1e3", "%20",
                                       "99999999999999999999999"]),
                      st.text(alphabet="abc019-_.~", min_size=1, max_size=8))


@pytest.fixture(scope="module")
def fuzz_client():
    _, node = build(NODE)
    return TestClient(create_app(node))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(_MODIFYING), version=st.sampled_from(V.VERSIONS), body=_bodies,
       names=st.lists(_segments, min_size=3, max_size=3), slash=st.booleans())
def test_malformed_requests_to_modifying_endpoints_get_an_nginx_answer_never_a_500(
    fuzz_client, endpoint, version, body, names, slash
):
    path = endpoint.path.replace("{upstream}", names[0]).replace("{zone}", names[1])
    path = path.replace("{server_id}", names[2]).replace("{worker_id}", names[2])
    path = f"/api/{version}{path.rstrip('/')}" + ("/" if slash else "")
    r = fuzz_client.request(endpoint.method, path, content=body)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = error_of(r, version)
        assert err["code"] in V.error_codes_for(version)
