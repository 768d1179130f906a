"""Live mode in one process: a served cluster on loopback, real HTTP and TCP clients, and the
model's counters. Each test serves a small scenario on its own loopback addresses."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from live_harness import address_base, served

from api.live import LiveError
from sim.cluster import scenario
from sim.cluster.cluster import Cluster


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _cluster(conf: str, nodes: int = 1, extra: str = "") -> Cluster:
    text = f"seed: 3\nsample_interval: 1h\nnodes: {nodes}\nnginx_conf_inline: |\n{_indent(conf)}\n{extra}"
    return Cluster(scenario.loads(text), sample=False)


def serve(conf: str, test, *, nodes: int = 1, extra: str = "", **kw):
    """Serve ``conf`` and run ``await test(live, base_url_of_node1_port)``."""
    return served(_cluster(conf, nodes, extra), test, **kw)


def url(live, node: str, port: int) -> str:
    for b in live.frontends[node].bindings:
        if b.port == port:
            return f"http://{b.bind_address}:{b.bind_port}"
    raise LookupError(port)


def control(live) -> str:
    return f"http://127.0.0.1:{live.control_port}"


ROUTING = """
http {
    upstream backend {
        zone backend 64k;
        server 10.0.0.1:80;
    }
    server {
        listen 8080;
        server_name app.example.com;
        status_zone app;
        location / { proxy_pass http://backend; }
        location = /exact { return 200 "exact"; }
        location ~ \\.txt$ { return 200 "regex"; }
        location ^~ /files/ { return 200 "prefix"; }
        location /moved { return 301 http://elsewhere.example.com/; }
    }
    server {
        listen 8080;
        server_name *.example.org;
        status_zone wild;
        location / { return 200 "wild"; }
    }
    server {
        listen 8080 default_server;
        server_name default.example.com;
        status_zone fallback;
        location / { return 200 "default"; }
    }
    server {
        listen 8081;
        status_zone api;
        location /api { api write=on; }
        location /site/ { root %(root)s; }
        location /docs/ { alias %(root)s/site/; }
    }
    server {
        listen 8083;
        status_zone private;
        location /api { api; deny all; }
    }
}
"""

BACKENDS = """
backend_defaults:
  service_time: 5
  response_size: 1234
  status_mix: {200: 1.0}
"""


def _routing_conf(tmp_path) -> str:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>dashboard</h1>")
    (tmp_path / "site" / "app.js").write_text("console.log(1)")
    return ROUTING % {"root": tmp_path}


def test_requests_are_matched_to_server_and_location_as_nginx_does(tmp_path):
    async def t(live):
        base = url(live, "node1", 8080)
        async with httpx.AsyncClient() as c:
            cases = [
                ("app.example.com", "/exact", "exact"),
                ("app.example.com", "/files/a.txt", "prefix"),  # ^~ stops the regex search
                ("app.example.com", "/x/readme.txt", "regex"),
                ("shop.example.org", "/", "wild"),
                ("unknown.example.net", "/", "default"),
            ]
            got = []
            for host, path, _ in cases:
                r = await c.get(base + path, headers={"Host": host})
                got.append((r.status_code, r.text))
            moved = await c.get(base + "/moved", headers={"Host": "app.example.com"})
        return got, moved, live.cluster.nodes["node1"].server_zones

    got, moved, zones = serve(_routing_conf(tmp_path), t, extra=BACKENDS)
    assert got == [(200, "exact"), (200, "prefix"), (200, "regex"), (200, "wild"), (200, "default")]
    assert (moved.status_code, moved.headers["location"]) == (301, "http://elsewhere.example.com/")
    assert {z: zones[z].requests for z in ("app", "wild", "fallback")} == {"app": 4, "wild": 1, "fallback": 1}


def test_proxied_request_gets_the_simulated_status_size_and_peer(tmp_path):
    async def t(live):
        async with httpx.AsyncClient() as c:
            r = await c.get(url(live, "node1", 8080) + "/item/1", headers={"Host": "app.example.com"})
        return r, live.cluster.nodes["node1"]

    r, node = serve(_routing_conf(tmp_path), t, extra=BACKENDS)
    assert (r.status_code, len(r.content), r.headers["x-upstream-addr"]) == (200, 1234, "10.0.0.1:80")
    peer = node.upstreams["backend"].peers[0]
    assert (peer.requests, node.server_zones["app"].responses[1]) == (1, 1)  # [1] is 2xx


def test_api_requests_are_answered_by_the_api_and_counted_as_traffic(tmp_path):
    async def t(live):
        async with httpx.AsyncClient() as c:
            api = url(live, "node1", 8081) + "/api/9"
            first = await c.get(api + "/nginx")
            for _ in range(2):
                await c.get(api + "/http/server_zones")
            zones = (await c.get(api + "/http/server_zones")).json()
        return first, zones

    first, zones = serve(_routing_conf(tmp_path), t, extra=BACKENDS)
    assert first.status_code == 200 and first.json()["version"]
    # three requests were answered before this read, which is itself in process
    assert (zones["api"]["requests"], zones["api"]["responses"]["2xx"], zones["api"]["processing"]) == (4, 3, 1)


def test_access_rules_of_an_api_location_answer_403(tmp_path):
    async def t(live):
        async with httpx.AsyncClient() as c:
            r = await c.get(url(live, "node1", 8083) + "/api/9/nginx")
        return r, live.cluster.nodes["node1"].server_zones["private"]

    r, zone = serve(_routing_conf(tmp_path), t, extra=BACKENDS)
    assert r.status_code == 403
    assert zone.responses[3] == 1  # 4xx


def test_root_and_alias_locations_serve_files_from_disk(tmp_path):
    async def t(live):
        base = url(live, "node1", 8081)
        async with httpx.AsyncClient() as c:
            return [await c.get(base + p) for p in ("/site/", "/docs/app.js", "/site/missing.html")]

    index, js, missing = serve(_routing_conf(tmp_path), t, extra=BACKENDS)
    assert (index.status_code, index.text, index.headers["content-type"]) == (200, "<h1>dashboard</h1>", "text/html")
    assert (js.status_code, js.text) == (200, "console.log(1)")
    assert missing.status_code == 404


def test_a_port_in_use_is_an_error_naming_node_address_and_port(tmp_path):
    base = address_base()
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((base, 8081))
    blocker.listen()
    try:
        with pytest.raises(LiveError, match=rf"node node1: cannot listen on {base}:8081 \(http\)"):
            serve(_routing_conf(tmp_path), lambda live: asyncio.sleep(0), address_base=base, extra=BACKENDS)
    finally:
        blocker.close()


def test_port_offset_mode_binds_127_0_0_1_with_the_port_shifted_per_node(tmp_path):
    conf = "http {\n server {\n  listen 18080;\n  location / { return 200 \"n\"; }\n }\n}\n"

    async def t(live):
        return sorted((n, b.bind_address, b.bind_port) for n, fe in live.frontends.items() for b in fe.bindings)

    got = serve(conf, t, nodes=2, port_offset=7, address_base="unused")
    assert got == [("node1", "127.0.0.1", 18080), ("node2", "127.0.0.1", 18087)]


CRASHABLE = """
http {
    server {
        listen 8080;
        status_zone site;
        location / { return 200 "up"; }
    }
}
"""


def test_faults_through_the_control_endpoint_crash_and_restart_a_node():
    async def t(live):
        site = url(live, "node1", 8080)
        async with httpx.AsyncClient() as c:
            ok = await c.get(site + "/")
            crash = await c.post(control(live) + "/faults", json={"action": "crash_node", "target": "node1"})
            with pytest.raises(httpx.TransportError):
                await c.get(site + "/")
            down = (await c.get(control(live) + "/nodes/node1")).json()["up"]
            heal = await c.post(control(live) + "/faults/heal", json={"action": "crash_node", "target": "node1"})
            back = await c.get(site + "/")
            log = (await c.get(control(live) + "/faults")).json()
        zone = live.cluster.nodes["node1"].server_zones["site"]
        return ok, crash.json(), down, heal.json(), back, log, zone.requests

    ok, crash, down, heal, back, log, requests = serve(CRASHABLE, t)
    assert (ok.text, back.text) == ("up", "up")
    assert (crash["note"], down, heal["note"]) == ("node1 crashed", False, "node1 restarted")
    assert [e["action"] for e in log] == ["crash_node", "crash_node:healed"]
    assert requests == 1  # statistics start from zero after the restart


def test_control_endpoint_refuses_an_invalid_fault_with_the_reason():
    async def t(live):
        async with httpx.AsyncClient() as c:
            bad_node = await c.post(control(live) + "/faults", json={"action": "crash_node", "target": "node9"})
            bad_action = await c.post(control(live) + "/faults", json={"action": "explode"})
        return bad_node, bad_action

    bad_node, bad_action = serve(CRASHABLE, t)
    assert (bad_node.status_code, bad_node.json()) == (400, {"error": "target: expected a node name, got 'node9'"})
    assert bad_action.status_code == 400 and bad_action.json()["error"].startswith("action:")


def test_control_endpoint_reports_nodes_and_sim_time():
    async def t(live):
        async with httpx.AsyncClient() as c:
            nodes = (await c.get(control(live) + "/nodes")).json()
            t1 = (await c.get(control(live) + "/time")).json()
        return nodes, t1

    nodes, t1 = serve(CRASHABLE, t, nodes=2)
    assert [(n["name"], [b["config_port"] for b in n["listens"]]) for n in nodes] == [("node1", [8080]),
                                                                                       ("node2", [8080])]
    assert t1["sim_ms"] <= t1["target_ms"] and t1["speed"] == 1.0


def test_reload_with_a_new_config_opens_its_new_listen():
    new_conf = CRASHABLE.replace("listen 8080;", "listen 8080;\n        listen 8082;")

    async def t(live):
        async with httpx.AsyncClient() as c:
            r = await c.post(control(live) + "/nodes/node1/reload", json={"nginx_conf": new_conf})
            answer = await c.get(url(live, "node1", 8082) + "/")
        return r.json(), answer.text, live.cluster.nodes["node1"].generation

    entry, text, generation = serve(CRASHABLE, t)
    assert (text, generation) == ("up", 2)
    assert entry["listens"][0].endswith(":8082")


STREAM = """
stream {
    upstream tcp {
        zone tcp 64k;
        server 10.0.1.1:5432;
    }
    server {
        listen 5432;
        proxy_pass tcp;
        status_zone tcp;
    }
}
"""


def test_a_tcp_connection_to_a_stream_server_is_a_session_through_the_model():
    async def t(live):
        b = next(b for b in live.frontends["node1"].bindings if b.kind == "stream")
        reader, writer = await asyncio.open_connection(b.bind_address, b.bind_port)
        data = await reader.readexactly(700)
        writer.write(b"ping")
        echo = await reader.readexactly(4)
        writer.close()
        await writer.wait_closed()
        side = live.cluster.nodes["node1"].stream
        for _ in range(200):  # the pacer ends the session when it sees the close
            if side.server_zones["tcp"].sessions["2xx"]:
                break
            await asyncio.sleep(0.005)
        return data, echo, side.server_zones["tcp"], side.upstreams["tcp"].peers[0]

    data, echo, zone, peer = serve(STREAM, t, extra="backend_defaults:\n  stream_response_bytes: 700\n")
    assert (len(data), echo) == (700, b"ping")
    assert (zone.connections, zone.sessions["2xx"], peer.connections) == (1, 1, 1)
