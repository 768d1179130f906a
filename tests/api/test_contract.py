"""The per-version API contract: endpoint tables, error catalogue, field tables and JSON Schemas.

Hand-built responses for versions 3, 7 and 9 and real captured responses (tests/api/fixtures, see
SOURCES.txt) must validate against the schema of their version, and fields from a later version
must fail an older version's schema.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from api import versions as V

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _valid(schema: dict, instance) -> bool:
    return Draft202012Validator(schema).is_valid(instance)


def _errors(schema: dict, instance) -> list[str]:
    return [e.message for e in Draft202012Validator(schema).iter_errors(instance)]


def _get(version: int, path: str) -> dict:
    return V.response_schema(version, "GET", path)


# --------------------------------------------------------------------------------------------------
# Hand-built responses, shaped by version


def _ssl(version: int, kind: str = "ssl") -> dict:
    """/ssl (kind "ssl"), a server zone's ssl ("zone") or a peer's ssl ("peer")."""
    if version < 8:
        return {"handshakes": 10, "handshakes_failed": 1, "session_reuses": 4}
    out = {"handshakes": 10, "session_reuses": 4, "handshakes_failed": 1, "no_common_protocol": 0}
    if kind != "peer":
        out["no_common_cipher"] = 1
    out |= {"handshake_timeout": 0, "peer_rejected_cert": 0}
    failures = {"ssl": ("no_cert", "expired_cert", "revoked_cert", "hostname_mismatch", "other"),
                "zone": ("no_cert", "expired_cert", "revoked_cert", "other"),
                "peer": ("expired_cert", "revoked_cert", "hostname_mismatch", "other")}[kind]
    out["verify_failures"] = dict.fromkeys(failures, 0)
    return out


def _responses(version: int) -> dict:
    out = {"1xx": 0, "2xx": 7, "3xx": 1, "4xx": 1, "5xx": 1}
    if version >= 7:
        out["codes"] = {"200": 7, "304": 1, "404": 1, "502": 1}
    out["total"] = 10
    return out


def _health_checks(ran: bool) -> dict:
    out = {"checks": 3 if ran else 0, "fails": 0, "unhealthy": 0}
    if ran:
        out["last_passed"] = True
    return out


def _http_peer(version: int, *, used: bool = True, tls: bool = False) -> dict:
    peer = {"id": 0, "server": "10.0.0.1:80", "name": "10.0.0.1:80", "backup": False, "weight": 1,
            "state": "up", "active": 0}
    if tls and version >= 8:
        peer["ssl"] = _ssl(version, "peer")
    peer["max_conns"] = 20
    peer["requests"] = 10 if used else 0
    if used:
        peer |= {"header_time": 12, "response_time": 15}
        if version >= 9:
            buckets = dict.fromkeys(V.fields("response_time_hist_buckets", 9), 0) | {"25": 10}
            peer["response_time_hist"] = {"count": 10, "sum": 150, "buckets": buckets}
    peer |= {"responses": _responses(version), "sent": 1000, "received": 5000, "fails": 0, "unavail": 0,
             "health_checks": _health_checks(used), "downtime": 0}
    if used:
        peer["selected"] = "2026-01-01T00:00:05Z"
    return peer


def _stream_peer(version: int, *, used: bool = True) -> dict:
    peer = {"id": 1, "server": "10.0.0.2:5432", "name": "10.0.0.2:5432", "backup": True, "weight": 2,
            "state": "unhealthy", "active": 0, "connections": 3 if used else 0}
    if used:
        peer |= {"connect_time": 1, "first_byte_time": 2, "response_time": 3}
    peer |= {"sent": 10, "received": 20, "fails": 1, "unavail": 0, "health_checks": _health_checks(True),
             "downtime": 1500, "downstart": "2026-01-01T00:00:01.250Z"}
    if used:
        peer["selected"] = "2026-01-01T00:00:01Z"
    return peer


def _http_conf_server(drain: bool = False) -> dict:
    server = {"id": 0, "server": "10.0.0.1:80", "weight": 1, "max_conns": 0, "max_fails": 1,
              "fail_timeout": "10s", "slow_start": "0s", "route": "", "backup": False, "down": False}
    if drain:
        server["drain"] = True
    return server


_STREAM_CONF_SERVER = {"id": 0, "server": "10.0.0.2:5432", "weight": 1, "max_conns": 0, "max_fails": 1,
                       "fail_timeout": "10s", "slow_start": "0s", "backup": False, "down": False}


def _server_zone(version: int, *, tls: bool = True) -> dict:
    zone = {"processing": 1, "requests": 12, "responses": _responses(version), "discarded": 1,
            "received": 900, "sent": 9000}
    if tls and version >= 8:
        zone["ssl"] = _ssl(version, "zone")
    return zone


def _stream_server_zone(version: int) -> dict:
    zone = {"processing": 0, "connections": 4, "sessions": {"2xx": 3, "4xx": 0, "5xx": 1, "total": 4},
            "discarded": 0, "received": 40, "sent": 400}
    if version >= 8:
        zone["ssl"] = _ssl(version, "zone")
    return zone


def _cache() -> dict:
    read = {"responses": 1, "bytes": 100}
    fetched = {"responses": 2, "bytes": 200, "responses_written": 2, "bytes_written": 200}
    return {"size": 4096, "max_size": 1048576, "cold": False, "hit": read, "stale": read, "updating": read,
            "revalidated": read, "miss": fetched, "expired": fetched, "bypass": fetched}


def _slab() -> dict:
    slot = {"used": 1, "free": 3, "reqs": 9, "fails": 0}
    return {"pages": {"used": 2, "free": 30}, "slots": {"8": slot, "16": slot, "2048": slot}}


_WORKER = {"id": 0, "pid": 4242, "connections": {"accepted": 5, "dropped": 0, "active": 1, "idle": 0},
           "http": {"requests": {"total": 9, "current": 1}}}
_RESOLVER = {"requests": {"name": 3, "srv": 0, "addr": 1},
             "responses": {"noerror": 3, "formerr": 0, "servfail": 0, "nxdomain": 1, "notimp": 0,
                           "refused": 0, "timedout": 0, "unknown": 0}}


def _error(version: int, code: str = "UpstreamNotFound") -> dict:
    body = {"path": "/api/3/http/upstreams/x/", "method": "GET"} if version <= 3 else {}
    body["error"] = {"status": V.ERRORS[code].status, "text": V.error_text(code, version), "code": code}
    body |= {"request_id": "d2d6f7b4bc2a09bb4b4c47a2d4e1ae73", "href": V.ERROR_HREF}
    return body


def sample_responses(version: int) -> dict[tuple[str, str], object]:
    """One plausible success body for every endpoint of ``version`` that returns one."""
    upstream = {"peers": [_http_peer(version), _http_peer(version, used=False, tls=True)], "keepalive": 1,
                "queue": {"size": 0, "max_size": 100, "overflows": 0}, "zombies": 0, "zone": "backend"}
    stream_upstream = {"peers": [_stream_peer(version), _stream_peer(version, used=False)], "zombies": 0,
                       "zone": "tcp"}
    location = {"requests": 5, "responses": _responses(version), "discarded": 0, "received": 50, "sent": 500}
    limit_req = {"passed": 5, "delayed": 1, "rejected": 2, "delayed_dry_run": 0, "rejected_dry_run": 0}
    limit_conn = {"passed": 5, "rejected": 1, "rejected_dry_run": 0}
    conf_servers = [_http_conf_server(), _http_conf_server(drain=True) | {"id": 3}]
    samples = {
        "/": V.root_entries(version, True),
        "/nginx": {"version": V.RELEASES[version].nginx, "build": V.RELEASES[version].build,
                   "address": "127.0.0.1", "generation": 1, "load_timestamp": "2026-01-01T00:00:00.000Z",
                   "timestamp": "2026-01-01T00:00:09.120Z", "pid": 101, "ppid": 100},
        "/processes": {"respawned": 0},
        "/connections": {"accepted": 12, "dropped": 0, "active": 2, "idle": 1},
        "/slabs/": {"backend": _slab()},
        "/slabs/{zone}": _slab(),
        "/http/": V.http_entries(version),
        "/http/requests": {"total": 12, "current": 1},
        "/http/server_zones/": {"site": _server_zone(version), "plain": _server_zone(version, tls=False)},
        "/http/server_zones/{zone}": _server_zone(version),
        "/http/location_zones/": {"api": location},
        "/http/location_zones/{zone}": location,
        "/http/caches/": {"cache": _cache()},
        "/http/caches/{zone}": _cache(),
        "/http/limit_conns/": {"addr": limit_conn},
        "/http/limit_conns/{zone}": limit_conn,
        "/http/limit_reqs/": {"one": limit_req},
        "/http/limit_reqs/{zone}": limit_req,
        "/http/upstreams/": {"backend": upstream},
        "/http/upstreams/{upstream}/": upstream,
        "/http/upstreams/{upstream}/servers/": conf_servers,
        "/http/upstreams/{upstream}/servers/{server_id}": _http_conf_server(),
        "/http/keyvals/": {"one": {"a": "1"}, "empty": {}},
        "/http/keyvals/{zone}": {"a": "1", "b": "two"},
        "/stream/": V.stream_entries(version),
        "/stream/server_zones/": {"tcp": _stream_server_zone(version)},
        "/stream/server_zones/{zone}": _stream_server_zone(version),
        "/stream/limit_conns/": {"addr": limit_conn},
        "/stream/limit_conns/{zone}": limit_conn,
        "/stream/upstreams/": {"tcp": stream_upstream},
        "/stream/upstreams/{upstream}/": stream_upstream,
        "/stream/upstreams/{upstream}/servers/": [_STREAM_CONF_SERVER],
        "/stream/upstreams/{upstream}/servers/{server_id}": _STREAM_CONF_SERVER,
        "/stream/keyvals/": {"one": {"a": "1"}},
        "/stream/keyvals/{zone}": {"a": "1"},
        "/stream/zone_sync/": {"zones": {"one": {"records_pending": 0, "records_total": 2}},
                               "status": {"bytes_in": 10, "msgs_in": 1, "msgs_out": 1, "bytes_out": 10,
                                          "nodes_online": 2}},
        "/resolvers/": {"dns": _RESOLVER},
        "/resolvers/{zone}": _RESOLVER,
        "/ssl": _ssl(version),
        "/workers/": [_WORKER, _WORKER | {"id": 1, "pid": 4243}],
        "/workers/{worker_id}": _WORKER,
        "/license": {"eval": False, "active_till": 1798761600,
                     "reporting": {"healthy": True, "fails": 0, "grace": 15552000,
                                   "uuid": "13754cba-29fb-53e5-c32e-a6cf57c84b01"}},
    }
    out = {}
    for ep in V.endpoints_for(version):
        if ep.body is None:
            continue
        if ep.method == "GET":
            out[ep.method, ep.path] = samples[ep.path]
        elif ep.method == "DELETE":
            out[ep.method, ep.path] = conf_servers[:1] if "/http/" in ep.path else [_STREAM_CONF_SERVER]
        else:
            out[ep.method, ep.path] = _http_conf_server() if "/http/" in ep.path else _STREAM_CONF_SERVER
    return out


# --------------------------------------------------------------------------------------------------
# Endpoint tables


def test_versions_run_from_one_to_nine():
    assert V.VERSIONS == (1, 2, 3, 4, 5, 6, 7, 8, 9)
    assert V.LATEST == 9


def test_endpoint_counts_per_version_match_the_spec_revisions():
    assert [len(V.endpoints_for(v)) for v in V.VERSIONS] == [45, 50, 51, 51, 57, 66, 66, 66, 71]


def test_no_endpoint_was_ever_removed_and_each_is_listed_once():
    assert all(ep.last is None for ep in V.ENDPOINTS)
    keys = [(ep.path, ep.method) for ep in V.ENDPOINTS]
    assert len(keys) == len(set(keys))
    assert len({ep.operation_id for ep in V.ENDPOINTS}) == len(V.ENDPOINTS)


def test_stream_keyvals_arrive_in_v2():
    assert V.methods_for(1, "/stream/keyvals/{zone}") == ()
    assert V.methods_for(2, "/stream/keyvals/{zone}") == ("GET", "POST", "PATCH", "DELETE")


def test_v3_adds_stream_zone_sync():
    assert V.find_endpoint(2, "GET", "/stream/zone_sync/") is None
    assert V.find_endpoint(3, "GET", "/stream/zone_sync/").operation_id == "getStreamZoneSync"


def test_v5_adds_location_zones_and_resolvers():
    for path in ("/http/location_zones/", "/http/location_zones/{zone}", "/resolvers/", "/resolvers/{zone}"):
        assert V.find_endpoint(4, "GET", path) is None
        assert V.find_endpoint(5, "GET", path) is not None
    assert V.methods_for(5, "/resolvers/{zone}") == ("GET", "DELETE")


def test_v6_adds_limit_reqs_and_limit_conns_for_http_and_limit_conns_for_stream():
    def keys(version):
        return {(ep.path, ep.method) for ep in V.endpoints_for(version)}

    added = keys(6) - keys(5)
    assert {path for path, _ in added} == {
        "/http/limit_reqs/", "/http/limit_reqs/{zone}", "/http/limit_conns/", "/http/limit_conns/{zone}",
        "/stream/limit_conns/", "/stream/limit_conns/{zone}",
    }
    assert V.find_endpoint(6, "GET", "/stream/limit_reqs/") is None


def test_v9_adds_workers_and_a_read_only_license():
    assert V.methods_for(8, "/workers/") == ()
    assert V.methods_for(9, "/workers/") == ("GET", "DELETE")
    assert V.methods_for(9, "/workers/{worker_id}") == ("GET", "DELETE")
    assert V.methods_for(9, "/license") == ("GET",)


def test_success_statuses_follow_nginx():
    def success(method, path):
        return V.find_endpoint(9, method, path).success

    assert success("GET", "/nginx") == 200
    assert success("DELETE", "/connections") == 204
    assert success("POST", "/http/upstreams/{upstream}/servers/") == 201
    assert success("PATCH", "/http/upstreams/{upstream}/servers/{server_id}") == 200
    assert success("DELETE", "/http/upstreams/{upstream}/servers/{server_id}") == 200
    assert success("POST", "/http/keyvals/{zone}") == 201
    assert success("PATCH", "/http/keyvals/{zone}") == 204
    assert success("DELETE", "/stream/keyvals/{zone}") == 204


def test_fields_argument_is_accepted_only_where_the_spec_documents_it():
    accepts = {ep.path for ep in V.endpoints_for(9) if ep.method == "GET" and ep.fields}
    for path in ("/nginx", "/connections", "/ssl", "/slabs/", "/http/upstreams/",
                 "/http/upstreams/{upstream}/", "/http/keyvals/", "/stream/keyvals/", "/workers/",
                 "/resolvers/{zone}"):
        assert path in accepts
    for path in ("/", "/processes", "/http/", "/stream/", "/http/upstreams/{upstream}/servers/",
                 "/http/keyvals/{zone}", "/stream/zone_sync/", "/license"):
        assert path not in accepts
    assert V.find_endpoint(9, "GET", "/http/keyvals/{zone}").query == ("key",)


def test_collection_templates_keep_the_spec_trailing_slash():
    paths = {ep.path for ep in V.ENDPOINTS}
    assert "/http/upstreams/{upstream}/servers/{server_id}" in paths
    assert "/http/upstreams/{upstream}/" in paths
    assert "/slabs/" in paths and "/slabs/{zone}" in paths
    assert "/ssl" in paths and "/ssl/" not in paths


def test_unknown_version_is_refused():
    with pytest.raises(ValueError):
        V.endpoints_for(10)
    with pytest.raises(ValueError):
        V.load_schema(0)


# --------------------------------------------------------------------------------------------------
# Root, /http/ and /stream/ lists


def test_root_list_of_v3_without_stream_matches_the_observed_one():
    observed = ["nginx", "processes", "connections", "slabs", "http", "ssl"]
    assert V.root_entries(3, has_stream=False) == observed


def test_root_list_gains_resolvers_in_v5_and_workers_then_license_in_v9():
    assert "resolvers" not in V.root_entries(4)
    assert V.root_entries(6, has_stream=False) == [
        "nginx", "processes", "connections", "slabs", "http", "resolvers", "ssl"]
    assert V.root_entries(8) == _fixture("v8_root_list.json")
    assert V.root_entries(9, has_license=False) == [
        "nginx", "processes", "connections", "slabs", "http", "stream", "resolvers", "ssl", "workers"]
    assert V.root_entries(9)[-2:] == ["workers", "license"]


def test_http_list_matches_real_captures_of_v1_to_v4_and_v6_plus():
    assert V.http_entries(3) == _fixture("v3_http_list.json")
    assert V.http_entries(7) == [
        "requests", "server_zones", "location_zones", "caches", "limit_conns", "limit_reqs", "keyvals",
        "upstreams"]
    assert V.http_entries(5) == [
        "requests", "server_zones", "location_zones", "caches", "keyvals", "upstreams"]


def test_stream_list_shows_zone_sync_only_where_it_is_configured():
    assert V.stream_entries(7) == _fixture("v7_stream_list.json")
    assert V.stream_entries(8, has_zone_sync=False) == _fixture("v8_stream_list.json")
    assert V.stream_entries(1) == ["server_zones", "upstreams"]
    assert V.stream_entries(2) == ["server_zones", "keyvals", "upstreams"]


def test_root_list_naming_workers_fails_the_v8_schema_and_passes_v9():
    assert not _valid(_get(8, "/"), V.root_entries(9))
    assert _valid(_get(9, "/"), V.root_entries(9))


# --------------------------------------------------------------------------------------------------
# Errors


def test_every_endpoint_error_is_in_the_catalogue_with_an_error_status():
    for ep in V.ENDPOINTS:
        for code in ep.errors:
            assert 400 <= V.ERRORS[code].status < 500, code


def test_every_error_has_a_status_and_a_lower_case_default_text():
    for code, err in V.ERRORS.items():
        assert err.status in (400, 404, 405, 409, 413, 415), code
        assert err.text and not err.text[0].isupper(), code
        assert err.texts[0].text == err.text
        assert err.versions[0] <= err.versions[1]


def test_catalogue_statuses_spot_checks():
    status = {code: err.status for code, err in V.ERRORS.items()}
    assert status["UpstreamStatic"] == 400
    assert status["UpstreamNotFound"] == 404
    assert status["MethodDisabled"] == 405
    assert status["KeyvalKeyExists"] == 409
    assert status["JsonError"] == 415
    assert status["PathNotFound"] == 404


def test_error_texts_fill_in_names_in_nginx_style():
    assert V.error_text("UpstreamConfFormatError", name="a") == 'unknown parameter "a"'
    assert V.error_text("KeyvalKeyExists", key="a") == 'key "a" already exists'
    assert V.error_text("MethodDisabled") == "method disabled"
    assert V.error_text("KeyvalFormatError", 4, 3) == "nested object or list"
    assert V.error_text("KeyvalFormatError", 5, 3) == "invalid JSON"


def test_missing_stream_says_stream_not_configured_until_v3_and_path_not_found_after():
    endpoint = V.find_endpoint(3, "GET", "/stream/server_zones/")
    assert V.endpoint_errors(endpoint, 3) == ("StreamNotConfigured", "UnknownVersion")
    assert V.endpoint_errors(endpoint, 4) == ("PathNotFound", "UnknownVersion")
    assert V.not_configured_error(3) == "StreamNotConfigured"
    assert V.not_configured_error(3, "zone_sync") == "ZoneSyncNotConfigured"
    assert V.not_configured_error(4, "zone_sync") == "PathNotFound"


def test_codes_documented_from_v6_are_not_answered_earlier():
    post = V.find_endpoint(5, "POST", "/http/upstreams/{upstream}/servers/")
    assert "EntryExists" not in V.endpoint_errors(post, 5)
    assert "BodyReadError" not in V.endpoint_errors(post, 5)
    assert {"EntryExists", "BodyReadError"} <= set(V.endpoint_errors(post, 6))
    assert "WorkerNotFound" not in V.error_codes_for(8)


def test_resetting_statistics_can_answer_method_disabled_in_every_version():
    for version in V.VERSIONS:
        for path in ("/processes", "/connections", "/ssl"):
            endpoint = V.find_endpoint(version, "DELETE", path)
            assert "MethodDisabled" in V.endpoint_errors(endpoint, version)


def test_error_object_has_path_and_method_only_before_v4():
    assert V.fields("error", 3) == ("path", "method", "error", "request_id", "href")
    assert V.fields("error", 4) == ("error", "request_id", "href")
    assert _valid(V.object_schema(3, "error"), _error(3))
    assert not _valid(V.object_schema(4, "error"), _error(3))
    assert not _valid(V.object_schema(3, "error"), _error(4))
    assert _valid(V.object_schema(9, "error"), _error(9))


def test_error_schema_knows_only_the_codes_of_its_version():
    assert _valid(V.object_schema(3, "error"), _error(3, "StreamNotConfigured"))
    assert not _valid(V.object_schema(4, "error"), _error(4, "StreamNotConfigured"))
    assert not _valid(V.object_schema(8, "error"), _error(8, "WorkerNotFound"))
    wrong_status = _error(9)
    wrong_status["error"]["status"] = "404"
    assert not _valid(V.object_schema(9, "error"), wrong_status)


def test_real_path_not_found_error_fits_v4_plus_and_not_v3():
    body = _fixture("v8_error_path_not_found.json")
    assert _valid(V.object_schema(8, "error"), body)
    assert _valid(V.object_schema(4, "error"), body)
    assert not _valid(V.object_schema(3, "error"), body)


# --------------------------------------------------------------------------------------------------
# Field tables and schemas agree


def test_every_schema_is_valid_json_schema_2020_12():
    for version in V.VERSIONS:
        schema = V.load_schema(version)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
        for name in schema["$defs"]:
            Draft202012Validator.check_schema(V.object_schema(version, name))


def test_every_schema_reference_points_at_a_definition():
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for child in node.values():
                yield from refs(child)
        elif isinstance(node, list):
            for child in node:
                yield from refs(child)

    for version in V.VERSIONS:
        schema = V.load_schema(version)
        for ref in refs(schema):
            assert ref.startswith("#/$defs/"), (version, ref)
            assert ref.removeprefix("#/$defs/") in schema["$defs"], (version, ref)


def test_schema_objects_follow_the_field_tables_in_order_and_presence():
    for version in V.VERSIONS:
        defs = V.load_schema(version)["$defs"]
        for obj in V.FIELDS:
            if not V.fields(obj, version):
                assert obj not in defs, (version, obj)
                continue
            assert list(defs[obj]["properties"]) == list(V.fields(obj, version)), (version, obj)
            assert defs[obj]["required"] == list(V.always_fields(obj, version)), (version, obj)
            assert defs[obj]["additionalProperties"] is False


def test_conditional_fields_name_real_fields():
    for obj, conditional in V.CONDITIONAL.items():
        every = {name for table in V.FIELDS[obj].values() for name in table}
        assert set(conditional) <= every, obj


def test_schema_response_map_lists_every_endpoint_with_a_body():
    for version in V.VERSIONS:
        expected = {f"{ep.method} {ep.path}": {"$ref": f"#/$defs/{ep.body}"}
                    for ep in V.endpoints_for(version) if ep.body}
        assert V.load_schema(version)["responses"] == expected


def test_statistics_resets_have_no_body_schema():
    assert V.response_schema(9, "DELETE", "/http/server_zones/{zone}") is None
    with pytest.raises(KeyError):
        V.response_schema(4, "GET", "/http/location_zones/")
    with pytest.raises(KeyError):
        V.object_schema(4, "http_location_zone")


def test_load_schema_returns_a_fresh_copy():
    V.load_schema(7)["$defs"].clear()
    assert "http_upstream_peer" in V.load_schema(7)["$defs"]


def test_versions_module_imports_only_the_standard_library():
    # api/versions.py and its siblings api/versions_*.py, which may import each other
    for path in sorted(Path(V.__file__).parent.glob("versions*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and not (node.level == 1 and node.module and node.module.startswith("versions"))}
        assert imported <= {"__future__", "json", "functools", "pathlib", "typing"}, path.name


# --------------------------------------------------------------------------------------------------
# Hand-built responses


@pytest.mark.parametrize("version", [3, 7, 9])
def test_hand_built_responses_validate_against_their_version(version):
    samples = sample_responses(version)
    bodies = {(ep.method, ep.path) for ep in V.endpoints_for(version) if ep.body}
    assert set(samples) == bodies
    for (method, path), body in samples.items():
        assert _errors(V.response_schema(version, method, path), body) == [], (method, path)


def test_peer_with_codes_passes_v7_and_fails_v6():
    peer = _http_peer(7)
    assert "codes" in peer["responses"]
    assert _valid(V.object_schema(7, "http_upstream_peer"), peer)
    assert not _valid(V.object_schema(6, "http_upstream_peer"), peer)
    assert _valid(V.object_schema(6, "http_upstream_peer"), _http_peer(6))


def test_peer_with_ssl_passes_v8_and_fails_v7():
    peer = _http_peer(8, tls=True)
    assert _valid(V.object_schema(8, "http_upstream_peer"), peer)
    assert not _valid(V.object_schema(7, "http_upstream_peer"), peer)


def test_response_time_hist_passes_v9_and_fails_v8():
    peer = _http_peer(9)
    assert "response_time_hist" in peer
    assert _valid(V.object_schema(9, "http_upstream_peer"), peer)
    assert not _valid(V.object_schema(8, "http_upstream_peer"), peer)


def test_detailed_ssl_counters_fail_v7_and_are_required_in_v8():
    assert not _valid(_get(7, "/ssl"), _ssl(8))
    assert not _valid(_get(8, "/ssl"), _ssl(7))
    assert _valid(_get(3, "/ssl"), _ssl(7))


def test_peer_fields_that_apply_only_sometimes_may_be_absent_but_the_others_may_not():
    schema = V.object_schema(9, "http_upstream_peer")
    unused = _http_peer(9, used=False)
    del unused["max_conns"]
    assert _valid(schema, unused)
    for name in ("id", "state", "responses", "downtime", "health_checks"):
        broken = dict(unused)
        del broken[name]
        assert not _valid(schema, broken), name


def test_peer_max_conns_of_zero_is_not_written():
    peer = _http_peer(7) | {"max_conns": 0}
    assert not _valid(V.object_schema(7, "http_upstream_peer"), peer)


def test_health_check_without_runs_has_no_last_passed():
    schema = V.object_schema(3, "health_checks")
    assert _valid(schema, _health_checks(False))
    assert not _valid(schema, {"checks": 3, "fails": 0, "unhealthy": 0, "last_passed": "yes"})


def test_timestamps_have_exact_resolutions():
    peer = _http_peer(7)
    with_ms = peer | {"selected": "2026-01-01T00:00:05.000Z"}
    assert not _valid(V.object_schema(7, "http_upstream_peer"), with_ms)
    down = _stream_peer(7) | {"downstart": "2026-01-01T00:00:01Z"}
    assert not _valid(V.object_schema(7, "stream_upstream_peer"), down)
    nginx = sample_responses(7)["GET", "/nginx"] | {"load_timestamp": 1767225600000}
    assert not _valid(_get(7, "/nginx"), nginx)


def test_counters_must_be_integers():
    assert not _valid(_get(3, "/connections"), {"accepted": "12", "dropped": 0, "active": 2, "idle": 1})
    assert not _valid(_get(3, "/connections"), {"accepted": 1.5, "dropped": 0, "active": 2, "idle": 1})
    assert not _valid(_get(3, "/connections"), {"accepted": -1, "dropped": 0, "active": 2, "idle": 1})


def test_stream_peers_are_never_draining_but_http_peers_can_be():
    assert not _valid(V.object_schema(9, "stream_upstream_peer"), _stream_peer(9) | {"state": "draining"})
    assert _valid(V.object_schema(9, "http_upstream_peer"), _http_peer(9) | {"state": "draining"})


def test_conf_server_drain_appears_only_as_true_and_times_in_seconds():
    schema = V.object_schema(9, "http_upstream_conf_server")
    assert _valid(schema, _http_conf_server(drain=True))
    assert not _valid(schema, _http_conf_server() | {"drain": False})
    assert not _valid(schema, _http_conf_server() | {"fail_timeout": 10})
    assert not _valid(V.object_schema(9, "stream_upstream_conf_server"), _http_conf_server())


def test_keyval_values_are_strings():
    assert not _valid(_get(7, "/http/keyvals/{zone}"), {"a": 1})
    assert not _valid(_get(7, "/http/keyvals/{zone}"), {"a": {"value": "1", "expire": 3000}})


def test_workers_are_an_array_of_worker_objects():
    assert _valid(_get(9, "/workers/"), [_WORKER])
    assert not _valid(_get(9, "/workers/"), {"0": _WORKER})


# --------------------------------------------------------------------------------------------------
# Real captured responses


REAL = [
    ("v3_stream_upstreams.json", 3, "/stream/upstreams/"),
    ("v3_stream_zone_sync.json", 3, "/stream/zone_sync/"),
    ("v7_http_upstreams.json", 7, "/http/upstreams/"),
    ("v8_http_upstreams.json", 8, "/http/upstreams/"),
    ("v8_http_caches.json", 8, "/http/caches/"),
    ("v8_ssl.json", 8, "/ssl"),
    ("v8_root_list.json", 8, "/"),
    ("v8_stream_list.json", 8, "/stream/"),
    ("v7_stream_list.json", 7, "/stream/"),
    ("v3_http_list.json", 3, "/http/"),
]


@pytest.mark.parametrize(("name", "version", "path"), REAL)
def test_real_captured_response_validates_against_its_version(name, version, path):
    assert _errors(_get(version, path), _fixture(name)) == []


def test_real_v7_and_v8_captures_fail_the_version_before_them():
    assert not _valid(_get(6, "/http/upstreams/"), _fixture("v7_http_upstreams.json"))
    assert not _valid(_get(7, "/ssl"), _fixture("v8_ssl.json"))
    assert not _valid(_get(2, "/stream/"), _fixture("v7_stream_list.json"))


def test_real_captures_show_fields_absent_until_they_apply():
    upstreams = _fixture("v8_http_upstreams.json")
    failing, working = upstreams["backend"]["peers"]
    assert failing["state"] == "unavail" and "downstart" in failing
    assert working["state"] == "up" and "downstart" not in working
    assert "last_passed" not in working["health_checks"]
    assert "max_size" not in _fixture("v8_http_caches.json")["cache_backend"]
    unused_backup = _fixture("v7_http_upstreams.json")["trac-backend"]["peers"][1]
    assert unused_backup["requests"] == 0
    assert not {"header_time", "response_time", "selected"} & set(unused_backup)
    assert unused_backup["responses"]["codes"] == {}
    stream_peers = _fixture("v3_stream_upstreams.json")["dns_udp_backends"]["peers"]
    assert "connect_time" in stream_peers[0] and "connect_time" not in stream_peers[2]


def _assert_in_table_order(obj: str, version: int, body: dict) -> None:
    assert list(body) == [name for name in V.fields(obj, version) if name in body], obj


def test_real_captures_write_fields_in_the_table_order():
    for version, name in ((7, "v7_http_upstreams.json"), (8, "v8_http_upstreams.json")):
        for upstream in _fixture(name).values():
            _assert_in_table_order("http_upstream", version, upstream)
            for peer in upstream["peers"]:
                _assert_in_table_order("http_upstream_peer", version, peer)
                _assert_in_table_order("http_responses", version, peer["responses"])
                _assert_in_table_order("health_checks", version, peer["health_checks"])
    ssl = _fixture("v8_ssl.json")
    _assert_in_table_order("ssl", 8, ssl)
    _assert_in_table_order("ssl_verify_failures", 8, ssl["verify_failures"])
    for cache in _fixture("v8_http_caches.json").values():
        _assert_in_table_order("http_cache", 8, cache)
        _assert_in_table_order("http_cache_fetched", 8, cache["miss"])
