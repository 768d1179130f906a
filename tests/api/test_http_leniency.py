"""Where nginx's request line is wider than llhttp's (``api.live.rules.RequestLine``), on a raw
socket: a bare LF ending the request line, and method tokens llhttp does not know."""

from __future__ import annotations

import pytest
from test_http_rules import addr, one, responses, serve, talk


def test_bare_lf_line_endings_are_accepted_as_nginx_does():
    async def t(live):
        a = addr(live, 8080)
        status, _, body = one(await talk(a, b"GET /exact HTTP/1.1\nHost: a\n\n"))
        assert (status, body) == (200, b"exact")
        # in pieces, the LF arriving alone, and two requests on one connection
        got = responses(await talk(a, b"GET /exact HTTP/1.1", b"\n", b"Host: a\n\n",
                                   b"GET /a/c HTTP/1.1\nHost: a\nConnection: close\n\n", pause=0.01))
        assert [(s, b) for s, _, b in got] == [(200, b"exact"), (200, b"a-c")]

    serve(t)


def test_a_method_nginx_takes_reaches_the_location_that_answers_it():
    async def t(live):
        a = addr(live, 8080)
        status, _, body = one(await talk(a, b"FOO-BAR_X /exact HTTP/1.1\r\nHost: a\r\n\r\n"))
        assert (status, body) == (200, b"exact")  # return answers any method
        node = live.cluster.nodes["node1"]
        seen = []
        node.on_request = lambda req: seen.append(req.method)
        status, _, _ = one(await talk(a, b"PURGE /item/1 HTTP/1.1\r\nHost: a\r\n\r\n"))
        assert status == 200 and seen == ["PURGE"]  # proxied with its own method
        assert node.upstream_named("backend").peers[0].requests == 1

    serve(t)


def test_an_unknown_method_with_a_body_is_read_like_any_other():
    async def t(live):
        got = responses(await talk(addr(live, 8080), b"REPORT /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
                                   b"GET /exact HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        assert [s for s, _, _ in got] == [200, 200]

    serve(t)


@pytest.mark.parametrize("line", [b"get /exact HTTP/1.1", b"G@T /exact HTTP/1.1", b"GET\t/exact HTTP/1.1"])
def test_a_method_nginx_refuses_is_still_400(line):
    async def t(live):
        status, headers, _ = one(await talk(addr(live, 8080), line + b"\r\nHost: a\r\n\r\n"))
        assert (status, headers["connection"]) == (400, "close")

    serve(t)


def test_an_unknown_method_on_the_api_is_its_method_error():
    async def t(live):
        status, headers, body = one(await talk(addr(live, 8080), b"FOO /api/9/nginx HTTP/1.1\r\nHost: a\r\n"
                                                                 b"Connection: close\r\n\r\n"))
        return status, headers.get("content-type"), body

    status, ctype, body = serve(t)
    assert (status, ctype) == (405, "application/json")
    assert b'"code":"MethodNotSupported"' in body


# --- header buffers: the default server's until Host is read, then the named server's ----------

BUFFERS = """
http {
    server {
        listen 8080;
        large_client_header_buffers 2 1k;
        location / { return 200 "default"; }
    }
    server {
        listen 8080;
        server_name big.example;
        large_client_header_buffers 4 8k;
        location / { return 200 "big"; }
    }
}
"""


def _buffers_cluster():
    from sim.cluster import scenario
    from sim.cluster.cluster import Cluster

    conf = "\n".join("  " + line for line in BUFFERS.splitlines())
    return Cluster(scenario.loads(f"seed: 5\nsample_interval: 1h\nnodes: 1\nnginx_conf_inline: |\n{conf}\n"),
                   sample=False)


def test_large_header_buffers_come_from_the_server_host_chose_once_its_line_is_read():
    from live_harness import served

    big = b"X-Big: " + b"b" * 3000 + b"\r\n"

    async def t(live):
        a = addr(live, 8080)
        after_host = one(await talk(a, b"GET / HTTP/1.1\r\nHost: big.example\r\n" + big + b"\r\n"))
        before_host = one(await talk(a, b"GET / HTTP/1.1\r\n" + big + b"Host: big.example\r\n\r\n"))
        other_host = one(await talk(a, b"GET / HTTP/1.1\r\nHost: other.example\r\n" + big + b"\r\n"))
        return after_host, before_host, other_host

    after_host, before_host, other_host = served(_buffers_cluster(), t, speed=20.0)
    assert (after_host[0], after_host[2]) == (200, b"big")
    assert before_host[0] == 400 and b"Request Header Or Cookie Too Large" in before_host[2]
    assert other_host[0] == 400 and b"Request Header Or Cookie Too Large" in other_host[2]
