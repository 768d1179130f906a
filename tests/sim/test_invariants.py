"""Conservation laws of the counters, checked under hypothesis over random small scenarios.

Each example is a short run of one or two nodes with random weights, balancing, rates, status
mixes with 5xx, slow or failing backends, cut links, max_fails, max_conns, keepalive on both
sides and proxy_next_upstream with or without http_5xx. At many points of the run:

* a server zone's ``responses.total`` equals the sum of its classes and of its codes, and its
  ``requests`` equal the responses plus ``processing`` plus ``discarded``;
* every attempt the proxy started shows in exactly one peer's ``requests``, and each peer's
  ``requests`` are its responses plus its failed attempts without a response plus ``active``;
* no counter goes backwards.
"""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.cluster import cluster, scenario

ADDRS = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
DURATION_MS = 3000
STEP_MS = 50
LISTED_5XX = (500, 502, 503, 504)


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 3))
    method = draw(st.sampled_from(["", "least_conn;", "random two;"]))
    lines = [method]
    for addr in ADDRS[:n]:
        params = [
            f"weight={draw(st.integers(1, 5))}",
            f"max_fails={draw(st.integers(0, 3))}",
            f"fail_timeout={draw(st.sampled_from(['1s', '2s']))}",
        ]
        if draw(st.booleans()):
            params.append(f"max_conns={draw(st.integers(1, 4))}")
        lines.append(f"server {addr} {' '.join(params)};")
    if method == "" and n < 3 and draw(st.booleans()):
        lines.append(f"server {ADDRS[2]} backup;")
    if draw(st.booleans()):
        lines.append(f"keepalive {draw(st.integers(1, 8))};")
    if draw(st.booleans()):
        lines.append(f"queue {draw(st.integers(1, 5))} timeout={draw(st.sampled_from(['50ms', '300ms']))};")
    retry_5xx = draw(st.booleans())
    listed = " http_500 http_502 http_503 http_504" if retry_5xx else ""
    location = [
        f"proxy_next_upstream error timeout{listed};",
        f"proxy_read_timeout {draw(st.sampled_from(['80ms', '1s']))};",
        f"proxy_connect_timeout {draw(st.sampled_from(['100ms', '1s']))};",
    ]
    if draw(st.booleans()):
        location.append(f"proxy_next_upstream_tries {draw(st.integers(1, 3))};")
    conf = (
        "events {}\nhttp {\n  upstream backend {\n    zone backend 64k;\n"
        + "\n".join(f"    {x}" for x in lines if x)
        + "\n  }\n  server {\n    listen 80;\n    status_zone site;\n"
        + "    location / {\n      proxy_pass http://backend;\n"
        + "\n".join(f"      {x}" for x in location)
        + "\n    }\n  }\n}\n"
    )
    backends = {}
    for addr in ADDRS:
        bad = draw(st.floats(0, 0.3))
        backends[addr] = {
            "concurrency": draw(st.integers(1, 8)),
            "service_time": {"dist": "exponential", "mean": draw(st.floats(2, 60))},
            "status_mix": {200: 1.0 - bad, 500: bad / 2, 503: bad / 2, 404: 0.02},
        }
    nodes = draw(st.integers(1, 2))
    faults = []
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["backend_down", "backend_slow", "backend_erroring", "cut_link"]))
        addr = draw(st.sampled_from(ADDRS))
        fault = {
            "at": f"{draw(st.integers(0, DURATION_MS))}ms",
            "action": action,
            "target": f"node1|{addr}" if action == "cut_link" else addr,
            "duration": f"{draw(st.integers(50, 1500))}ms",
        }
        if action == "backend_slow":
            fault["factor"] = draw(st.floats(2, 20))
        if action == "backend_erroring":
            fault["rate"] = draw(st.floats(0.1, 1.0))
        faults.append(fault)
    data = {
        "seed": draw(st.integers(0, 2**16)),
        "duration": f"{DURATION_MS}ms",
        "sample_interval": "500ms",
        "nodes": nodes,
        "network": {"latency_ms": draw(st.sampled_from([0.0, 0.5, 2.0]))},
        "nginx_conf_inline": conf,
        "backends": backends,
        "faults": faults,
        "workloads": [
            {
                "name": "clients",
                "rate": draw(st.floats(20, 400)),
                "arrivals": draw(st.sampled_from(["poisson", "constant"])),
                "keepalive_requests": draw(st.integers(1, 5)),
                "paths": {"count": 20},
            }
        ],
    }
    return data, retry_5xx


def counters(node) -> dict:
    """Every counter that may only grow, by a stable name."""
    out = {
        "requests_total": node.requests_total,
        "accepted": node.connections_accepted,
        "latency_n": node.latency.n,
    }
    for name, z in node.server_zones.items():
        out[f"{name}.requests"] = z.requests
        out[f"{name}.received"] = z.received
        out[f"{name}.sent"] = z.sent
        out[f"{name}.discarded"] = z.discarded
        for i, v in enumerate(z.responses):
            out[f"{name}.{i + 1}xx"] = v
        for code, v in z.codes.items():
            out[f"{name}.code{code}"] = v
    for up in node.upstreams.values():
        out[f"{up.name}.overflows"] = up.overflows
        for p in up.peers:
            key = f"{up.name}/{p.id}"
            for field in ("requests", "sent", "received", "fails", "unavail"):
                out[f"{key}.{field}"] = getattr(p, field)
            for i, v in enumerate(p.responses):
                out[f"{key}.{i + 1}xx"] = v
            out[f"{key}.downtime"] = p.downtime_at(node.env.now)
    return out


def check_node(node, attempts: int, retry_5xx: bool) -> None:
    for z in node.server_zones.values():
        total = sum(z.responses)
        assert total == sum(z.codes.values())
        assert z.requests == total + z.processing + z.discarded
        assert z.processing >= 0
        # one server block: every request the node took is in this zone
        assert z.requests == node.requests_total
        assert z.processing == node.requests_current
        assert node.latency.n == total
    up = node.upstreams["backend"]
    assert sum(p.requests for p in up.peers) == attempts
    for p in up.peers:
        listed = sum(p.codes.get(s, 0) for s in LISTED_5XX) if retry_5xx else 0
        failed_without_response = p.fails - listed
        assert failed_without_response >= 0
        assert p.requests == sum(p.responses) + failed_without_response + p.active
        assert sum(p.responses) == sum(p.codes.values())
        assert p.active >= 0
        if p.max_conns:
            assert p.active <= p.max_conns
    assert 0 <= up.queue_len <= (up.queue_max or 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_counters_are_conserved_and_never_go_backwards(drawn):
    data, retry_5xx = drawn
    sc = scenario.loads(yaml.safe_dump(data), filename="random.yaml")
    cl = cluster.Cluster(sc)
    previous = {name: counters(node) for name, node in cl.nodes.items()}
    for t in range(STEP_MS, DURATION_MS + STEP_MS, STEP_MS):
        cl.run(t)
        for name, node in cl.nodes.items():
            check_node(node, node.proxy.attempts, retry_5xx)
            now = counters(node)
            for key, value in now.items():
                assert value >= previous[name].get(key, 0), (t, name, key)
            previous[name] = now
    # the sampler's cumulative columns never go backwards either
    rows = cl.sampler.rows
    assert rows
    for name in cl.nodes:
        mine = [r for r in rows if r["node"] == name]
        for a, b in zip(mine, mine[1:], strict=False):
            for col in ("requests_total", "responses_2xx", "responses_3xx", "responses_4xx", "responses_5xx"):
                assert b[col] >= a[col]
