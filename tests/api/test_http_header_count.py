"""``max_headers`` on the live wire, and the lingering directives read from nginx.conf."""

from __future__ import annotations

import pytest
from live_harness import served
from test_http_rules import addr, one, talk

from sim.cluster import scenario
from sim.cluster.cluster import Cluster
from sim.conf import reader
from sim.conf.config import ConfigError

CONF = """
http {
    max_headers 4;
    server {
        listen 8080;
        location / { return 200 "ok"; }
    }
    server {
        listen 8080;
        server_name many.example.com;
        max_headers 8;
        location / { return 200 "many"; }
    }
}
"""


def _cluster() -> Cluster:
    conf = "\n".join("  " + line for line in CONF.splitlines())
    return Cluster(scenario.loads(f"seed: 5\nsample_interval: 1h\nnodes: 1\nnginx_conf_inline: |\n{conf}\n"),
                   sample=False)


def head(host: bytes, extra: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(extra)) + b"\r\n"


def test_more_header_lines_than_max_headers_are_400_too_large_and_the_host_server_sets_the_limit():
    async def t(live):
        a = addr(live, 8080)
        assert one(await talk(a, head(b"a.example.com", 3)))[0] == 200  # 4 lines: the limit
        status, headers, body = one(await talk(a, head(b"a.example.com", 4)))
        assert status == 400 and headers["connection"] == "close"
        assert b"Request Header Or Cookie Too Large" in body
        # once Host names the second server, its max_headers counts
        status, _, body = one(await talk(a, head(b"many.example.com", 7)))
        assert (status, body) == (200, b"many")
        assert one(await talk(a, head(b"many.example.com", 8)))[0] == 400

    served(_cluster(), t, speed=20.0)


def test_lingering_directives_are_read_with_nginx_defaults():
    conf = reader.loads("events {}\nhttp {\n lingering_close always;\n lingering_time 10s;\n"
                        " server { listen 80; lingering_timeout 2s; location / { return 200; } }\n"
                        " server { listen 81; lingering_close off; location / { return 200; } }\n}\n")
    a, b = (s.client for s in conf.http.servers)
    assert (a.lingering_close, a.lingering_time_ms, a.lingering_timeout_ms, a.max_headers) == ("always", 10_000, 2000, 1000)
    assert (b.lingering_close, b.lingering_time_ms, b.lingering_timeout_ms) == ("off", 10_000, 5000)


def test_a_bad_lingering_close_or_max_headers_names_the_line():
    for line, word in (("lingering_close sometimes;", "sometimes"), ("max_headers many;", "max_headers")):
        with pytest.raises(ConfigError) as err:
            reader.loads(f"events {{}}\nhttp {{\n {line}\n server {{ listen 80; }}\n}}\n")
        assert word in str(err.value) and ":3" in str(err.value)
