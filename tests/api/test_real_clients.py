"""What nginx-plus-go-client's own integration suite (run by NGINX against real NGINX Plus) needs
of the twin, pinned on scenarios/client-suite.yaml, our copy of the suite's setup.

Each test serves the two-node cluster on loopback addresses of its own and talks HTTP to it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import httpx
from live_harness import served

from sim.cluster import scenario
from sim.cluster.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "client-suite.yaml"

#: What the client's GetStats reads, all at once.
STATS = ("nginx", "processes", "connections", "slabs", "http/requests", "ssl", "workers", "resolvers",
         "http/server_zones", "http/location_zones", "http/upstreams", "http/caches", "http/keyvals",
         "http/limit_reqs", "http/limit_conns", "stream/server_zones", "stream/upstreams",
         "stream/keyvals", "stream/zone_sync", "stream/limit_conns", "", "http", "stream")


def serve(test, **kw):
    return served(Cluster(scenario.load(str(SCENARIO)), sample=False), test, **kw)


def base(live, node: str = "nginx") -> str:
    b = next(b for b in live.frontends[node].bindings if b.port == 8080)
    return f"http://{b.bind_address}:{b.bind_port}"


def api(live, node: str = "nginx") -> str:
    return base(live, node) + "/api/9"


def is_json(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith("application/json")


def test_an_empty_upstream_with_a_zone_loads_lists_no_peers_and_answers_502_until_a_server_is_added():
    async def t(live):
        async with httpx.AsyncClient() as c:
            before = await c.get(api(live) + "/http/upstreams/test")
            first = await c.get(base(live) + "/test/a")
            added = await c.post(api(live) + "/http/upstreams/test/servers", json={"server": "10.9.0.1:80"})
            after = await c.get(base(live) + "/test/b")
            stream = await c.get(api(live) + "/stream/upstreams/stream_test")
        return before, first, added, after, stream

    before, first, added, after, stream = serve(t)
    assert before.status_code == 200 and before.json()["peers"] == []
    assert stream.status_code == 200 and stream.json()["peers"] == []
    assert first.status_code == 502
    assert added.status_code == 201 and added.json()["server"] == "10.9.0.1:80"
    assert after.status_code == 200


def test_requests_that_limit_req_delays_are_served_like_any_other_and_counted_once():
    # at a twentieth of real speed, 40 parallel reads come in far faster than 1500 r/s
    n = 40

    async def t(live):
        node = live.cluster.nodes["nginx"]
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n)) as c:
            replies = await asyncio.gather(*(c.get(api(live) + "/nginx") for _ in range(n)))
        z = node.limit_reqs["one"]
        return replies, (z.passed, z.delayed, z.rejected), node.server_zones["test"].codes

    replies, (passed, delayed, rejected), codes = serve(t, speed=0.05)
    assert [r.status_code for r in replies] == [200] * n
    assert all(is_json(r) and r.json()["generation"] == 1 for r in replies)
    assert delayed > 0 and rejected == 0
    assert passed + delayed == n  # each request counted once, in one verdict
    assert codes.get(404, 0) == 0


def test_parallel_api_reads_never_hit_limit_conn_while_slow_proxied_requests_are_limited():
    async def t(live):
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=60), timeout=30) as c:
            await c.post(api(live) + "/http/upstreams/test/servers", json={"server": "10.9.0.1:80"})
            reads = await asyncio.gather(*(c.get(api(live) + "/" + STATS[i % len(STATS)]) for i in range(30)))
            slow = await asyncio.gather(*(c.get(base(live) + f"/test/{i}") for i in range(30)))
            zone = live.cluster.nodes["nginx"].limit_conns["addr"]
        return reads, slow, (zone.passed, zone.rejected)

    reads, slow, (passed, rejected) = serve(t)
    assert [r.status_code for r in reads] == [200] * 30 and all(is_json(r) for r in reads)
    statuses = sorted(r.status_code for r in slow)
    # the backend takes 400 ms: ten hold the ten slots, the others are refused
    assert statuses == [200] * 10 + [503] * 20
    assert rejected == 20 and passed == 1 + 30 + 10  # the POST, the reads, the ten proxied


def test_a_backup_server_can_be_added_to_a_round_robin_upstream_without_backups():
    async def t(live):
        async with httpx.AsyncClient() as c:
            http = await c.post(api(live) + "/http/upstreams/test/servers", json={"server": "10.9.0.2:80", "backup": True})
            stream = await c.post(api(live) + "/stream/upstreams/stream_test/servers",
                                  json={"server": "10.9.0.2:81", "backup": True})
            listed = await c.get(api(live) + "/http/upstreams/test/servers")
        return http, stream, listed

    http, stream, listed = serve(t)
    assert http.status_code == 201 and http.json()["backup"] is True
    assert stream.status_code == 201 and stream.json()["backup"] is True
    assert [(s["server"], s["backup"]) for s in listed.json()] == [("10.9.0.2:80", True)]


def test_generation_is_1_after_start_and_each_reload_adds_one_and_timestamps_follow_the_wall_clock():
    def iso(text: str) -> float:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    async def t(live):
        async with httpx.AsyncClient() as c:
            first = (await c.get(api(live) + "/nginx")).json()
            wall = time.time()
            await c.post(f"http://127.0.0.1:{live.control_port}/nodes/nginx/reload", json={})
            second = (await c.get(api(live) + "/nginx")).json()
            helper = (await c.get(api(live, "nginx-helper") + "/nginx")).json()
        return first, wall, second, helper

    first, wall, second, helper = serve(t)
    assert (first["generation"], second["generation"], helper["generation"]) == (1, 2, 1)
    assert abs(iso(first["timestamp"]) - wall) < 1.0
    assert abs(iso(first["load_timestamp"]) - wall) < 5.0
    assert iso(second["load_timestamp"]) >= iso(first["load_timestamp"])


def test_the_zone_sync_name_is_resolved_again_each_time_its_answer_runs_out_and_counted():
    cl = Cluster(scenario.load(str(SCENARIO)), sample=False)
    zone = cl.nodes["nginx"].resolvers["resolver_test"]
    seen = []
    for t in (500, 4500, 5500, 9500, 10500, 15500):
        cl.run(t)
        seen.append((zone.requests["name"], zone.responses["noerror"]))
    # valid=5s: a query at start, then one each time the answer runs out
    assert seen == [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (4, 4)]


def test_a_zone_sync_name_that_times_out_counts_every_query_as_timedout():
    text = SCENARIO.read_text().replace("nginx-plus-test: [nginx, nginx-helper]", "nginx-plus-test: [timeout]")
    cl = Cluster(scenario.loads(text, base_dir=SCENARIO.parent), sample=False)
    cl.run(6000)
    zone = cl.nodes["nginx"].resolvers["resolver_test"]
    assert zone.requests["name"] >= 2 and zone.responses["timedout"] == zone.requests["name"]
    assert zone.responses["noerror"] == 0


def test_parallel_stats_rounds_only_ever_get_the_documented_json():
    rounds = 100  # as many as the issue asks of a controller's GetStats

    async def t(live):
        out = []
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=len(STATS))) as c:
            for _ in range(rounds):
                out += await asyncio.gather(*(c.get(api(live) + "/" + p) for p in STATS))
        return out

    replies = serve(t)
    assert len(replies) == rounds * len(STATS)
    assert {r.status_code for r in replies} == {200}
    assert all(is_json(r) for r in replies)


def test_a_thousand_controller_sync_cycles_get_only_the_documented_answers():
    # what NGINX Ingress Controller does through the client's UpdateHTTPServers: GET the
    # servers, then POST what is missing, PATCH what changed and DELETE what is gone
    import random

    from fastapi.testclient import TestClient

    from api.app import create_app

    cl = Cluster(scenario.load(str(SCENARIO)), sample=False)
    node = cl.nodes["nginx"]
    client = TestClient(create_app(node), base_url="http://127.0.0.1")
    path = "/api/9/http/upstreams/test/servers"
    pool = [f"10.20.0.{i}:80" for i in range(1, 13)]
    rng = random.Random(7)
    answers: dict[tuple[str, int], int] = {}

    def note(method: str, r) -> None:
        assert r.headers["content-type"].startswith("application/json"), (method, r.text)
        answers[(method, r.status_code)] = answers.get((method, r.status_code), 0) + 1

    for cycle in range(1000):
        wanted = {s: rng.choice((1, 1, 2, 5)) for s in rng.sample(pool, rng.randint(0, 6))}
        r = client.get(path)
        note("GET", r)
        have = {s["server"]: s for s in r.json()}
        for server, weight in wanted.items():
            if server not in have:
                note("POST", client.post(path, json={"server": server, "weight": weight}))
            elif have[server]["weight"] != weight:
                note("PATCH", client.patch(f"{path}/{have[server]['id']}", json={"weight": weight}))
        for server, s in have.items():
            if server not in wanted:
                note("DELETE", client.delete(f"{path}/{s['id']}"))
        listed = {s["server"]: s["weight"] for s in client.get(path).json()}
        assert listed == wanted, cycle
        cl.run(cl.env.now + 10)
    assert set(answers) <= {("GET", 200), ("POST", 201), ("PATCH", 200), ("DELETE", 200)}
    assert answers[("GET", 200)] == 1000 and answers[("POST", 201)] > 500 and answers[("DELETE", 200)] > 500
    # the upstream's peers are the last cycle's, and the API's view is the model's
    assert sorted(p.name for p in node.upstreams["test"].peers) == sorted(wanted)
