"""nginx's request rules on the live wire, one raw-socket test each (docs/live.md, "The wire").

Every test serves a small config on loopback addresses of its own at speed 20 (nginx's timers run
on the model's clock, so a 2 s timeout is 0.1 s of wall time), writes bytes to a socket and
reads what comes back until the server closes the connection (bounded)."""

from __future__ import annotations

import asyncio
import json

import pytest
from live_harness import served

from sim.cluster import scenario
from sim.cluster.cluster import Cluster

SPEED = 20.0

CONF = """
http {
    upstream backend {
        zone backend 64k;
        server 10.0.0.1:80;
    }
    server {
        listen 8080;
        client_max_body_size 1k;
        client_header_timeout 2s;
        client_body_timeout 2s;
        keepalive_timeout 2s 7;
        keepalive_requests 3;
        location / { proxy_pass http://backend; }
        location = /exact { return 200 "exact"; }
        location /a/c { return 200 "a-c"; }
        location /big/ { client_max_body_size 20m; proxy_pass http://backend; }
        location /api { api write=on; client_max_body_size 1m; }
    }
    server {
        listen 8081;
        large_client_header_buffers 2 1k;
        merge_slashes off;
        keepalive_timeout 0;
        location = /exact { return 200 "exact"; }
        location / { return 200 "other"; }
    }
}
"""


def _cluster() -> Cluster:
    conf = "\n".join("  " + line for line in CONF.splitlines())
    text = (f"seed: 5\nsample_interval: 1h\nnodes: 1\nnginx_conf_inline: |\n{conf}\n"
            "backend_defaults:\n  service_time: 2\n  response_size: 300\n  header_bytes: 100\n"
            "  status_mix: {200: 1.0}\n")
    return Cluster(scenario.loads(text), sample=False)


def serve(test):
    return served(_cluster(), test, speed=SPEED)


def addr(live, port: int) -> tuple[str, int]:
    for b in live.frontends["node1"].bindings:
        if b.port == port:
            return b.bind_address, b.bind_port
    raise LookupError(port)


async def talk(address, *parts: bytes, pause: float = 0.0, limit: float = 5.0) -> bytes:
    """Send ``parts`` (``pause`` seconds apart) and read until the server closes (at most ``limit`` s)."""
    reader, writer = await asyncio.open_connection(*address)
    out = bytearray()

    async def read():
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            out.extend(chunk)

    task = asyncio.ensure_future(read())
    try:
        for p in parts:
            writer.write(p)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        await asyncio.wait_for(task, limit)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        task.cancel()
        writer.close()
    return bytes(out)


def responses(data: bytes) -> list[tuple[int, dict, bytes]]:
    """The responses in ``data``: (status, headers with lower-case names, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", 0)) if status >= 200 else 0
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def one(data: bytes) -> tuple[int, dict, bytes]:
    [r] = responses(data)
    return r


GET = b"GET /exact HTTP/1.1\r\nHost: a.example.com\r\n\r\n"


# --- Host, Content-Length, Transfer-Encoding ----------------------------------------------------


def test_http11_without_host_is_400_with_nginx_page_and_closed():
    async def t(live):
        status, headers, body = one(await talk(addr(live, 8080), b"GET /exact HTTP/1.1\r\n\r\n"))
        assert (status, headers["connection"]) == (400, "close")
        assert b"<center><h1>400 Bad Request</h1></center>" in body and b"<center>nginx</center>" in body
        http10 = one(await talk(addr(live, 8080), b"GET /exact HTTP/1.0\r\n\r\n"))
        assert (http10[0], http10[2]) == (200, b"exact")
        assert live.frontends["node1"].refused == {400: 1}

    serve(t)


@pytest.mark.parametrize("head", [
    b"POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
    b"POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
    b"GET /exact HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /exact HTTP/1.1\r\nHost: a/b\r\n\r\n",
    b"POST /exact HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["cl-and-te", "two-cl", "negative-cl", "bad-cl", "two-hosts", "bad-host", "http10-te"])
def test_ambiguous_or_invalid_framing_is_400_and_closed(head):
    async def t(live):
        status, headers, body = one(await talk(addr(live, 8080), head))
        assert status == 400 and headers["connection"] == "close" and b"nginx" in body

    serve(t)


def test_an_unknown_transfer_encoding_is_501_and_trace_is_405_and_http2_is_505():
    async def t(live):
        a = addr(live, 8080)
        assert one(await talk(a, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"))[0] == 501
        assert one(await talk(a, b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"))[0] == 405
        status, _, body = one(await talk(a, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"))
        assert status == 505 and b"505 HTTP Version Not Supported" in body

    serve(t)


# --- header buffers -----------------------------------------------------------------------------


def test_a_64k_header_line_is_400_request_header_or_cookie_too_large():
    async def t(live):
        head = b"GET /exact HTTP/1.1\r\nHost: a\r\nCookie: " + b"c" * 65536 + b"\r\n\r\n"
        status, headers, body = one(await talk(addr(live, 8080), head))
        assert status == 400 and headers["connection"] == "close"
        assert b"<title>400 Request Header Or Cookie Too Large</title>" in body
        assert b"<center>Request Header Or Cookie Too Large</center>" in body

    serve(t)


def test_headers_that_need_more_large_buffers_than_there_are_are_400():
    async def t(live):
        # large_client_header_buffers 2 1k: each line fits in one buffer; the first buffer and
        # two large ones hold three such lines and part of a fourth, not all four
        lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(4))
        status, _, body = one(await talk(addr(live, 8081), b"GET /exact HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n"))
        assert status == 400 and b"Request Header Or Cookie Too Large" in body
        two = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(3))
        assert one(await talk(addr(live, 8081), b"GET /exact HTTP/1.1\r\nHost: a\r\n" + two + b"\r\n"))[0] == 200

    serve(t)


def test_a_40k_uri_is_414_and_a_5k_uri_is_served():
    async def t(live):
        a = addr(live, 8080)
        status, _, body = one(await talk(a, b"GET /" + b"u" * 40_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"))
        assert status == 414 and b"<h1>414 Request-URI Too Large</h1>" in body
        # beyond client_header_buffer_size (1k) but within one large buffer (8k): served
        assert one(await talk(a, b"GET /exact?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"))[:3:2] == (200, b"exact")

    serve(t)


# --- the URI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/api/../../etc/passwd", b"/..", b"/a/%2e%2e/%2E%2E/x", b"/a%00b", b"/a%zz",
                                    b"/%2e%2e%2f"])
def test_a_uri_that_climbs_above_the_root_or_has_a_bad_escape_is_400(target):
    async def t(live):
        status, _, body = one(await talk(addr(live, 8080), b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"))
        assert status == 400 and b"nginx" in body

    serve(t)


def test_locations_are_matched_against_the_normalized_uri():
    async def t(live):
        a = addr(live, 8080)
        for target in (b"/a/./b/../c", b"/a//c", b"/%61/c", b"/a/b%2f..%2fc", b"/x/../exact"):
            status, _, body = one(await talk(a, b"GET " + target + b" HTTP/1.0\r\n\r\n"))
            assert (target, status) == (target, 200) and body in (b"a-c", b"exact")
        # merge_slashes off on 8081: "//exact" is not "/exact"
        assert one(await talk(addr(live, 8081), b"GET //exact HTTP/1.0\r\n\r\n"))[2] == b"other"
        assert one(await talk(addr(live, 8080), b"GET //exact HTTP/1.0\r\n\r\n"))[2] == b"exact"

    serve(t)


# --- bodies -------------------------------------------------------------------------------------


def test_a_declared_body_over_client_max_body_size_is_413_before_it_is_sent():
    async def t(live):
        head = b"POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        # only the head is sent: the answer comes from it alone, without "100 Continue"
        data = await talk(addr(live, 8080), head, limit=2.0)
        status, headers, body = one(data)
        assert status == 413 and headers["connection"] == "close" and b"413 Request Entity Too Large" in body
        assert b"100 Continue" not in data

    serve(t)


def test_the_connection_lingers_after_413_so_the_client_can_finish_sending():
    async def t(live):
        head = b"POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 50000\r\n\r\n"
        data = await talk(addr(live, 8080), head, b"z" * 25_000, b"z" * 25_000, pause=0.02)
        assert one(data)[0] == 413  # answered once, read to the end: no reset lost the answer

    serve(t)


def test_a_chunked_body_over_the_limit_is_413_and_within_it_is_served():
    async def t(live):
        a = addr(live, 8080)
        chunks = b"".join(b"200\r\n" + b"c" * 512 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
        head = b"POST /item HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert one(await talk(a, head + chunks))[0] == 413
        small = b"5\r\nhello\r\n0\r\n\r\n"
        status, headers, body = responses(await talk(a, head + small + GET))[0]
        assert status == 200 and body == b"x" * 300  # the simulated response_size

    serve(t)


def test_expect_100_continue_is_answered_before_the_body_is_read():
    async def t(live):
        reader, writer = await asyncio.open_connection(*addr(live, 8080))
        writer.write(b"POST /item HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        writer.close()

    serve(t)


def test_a_large_body_for_the_api_gets_the_api_error_object():
    async def t(live):
        body = json.dumps({"server": "10.0.0.9:80", "pad": "p" * 20_000}).encode()
        head = b"POST /api/9/http/upstreams/backend/servers HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        status, headers, text = one(await talk(addr(live, 8080), head + b"Content-Length: %d\r\n\r\n" % len(body) + body))
        assert status == 413 and headers["content-type"] == "application/json"
        assert json.loads(text)["error"]["status"] == 413
        servers = live.cluster.nodes["node1"].upstream_named("backend").peers
        assert [p.server for p in servers] == ["10.0.0.1:80"]

    serve(t)


def test_api_gets_errors_and_heads_on_the_wire_are_nginx_s():
    async def t(live):
        get = b"GET /api/9/http/upstreams/backend HTTP/1.1\r\nHost: a\r\n\r\n"
        miss = b"GET /api/9/http/upstreams/nope HTTP/1.1\r\nHost: a\r\n\r\n"
        head = b"HEAD /api/9/http/upstreams/backend HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        data = await talk(addr(live, 8080), get + miss + head)
        first, rest = data.split(b"\r\n\r\n", 1)
        assert b"\r\nContent-Type: application/json\r\n" in first  # spelled as nginx spells it
        (s1, h1, b1), (s2, h2, b2) = responses(first + b"\r\n\r\n" + rest.rsplit(b"HTTP/1.1 ", 1)[0])
        assert (s1, [p["server"] for p in json.loads(b1)["peers"]]) == (200, ["10.0.0.1:80"])
        assert (s2, json.loads(b2)["error"]["code"]) == (404, "UpstreamNotFound")
        last = b"HTTP/1.1 " + rest.rsplit(b"HTTP/1.1 ", 1)[1]
        head_lines, _, after = last.partition(b"\r\n\r\n")
        assert head_lines.startswith(b"HTTP/1.1 200") and after == b""  # no body to a HEAD
        assert b"\r\nContent-Length: %d\r\n" % len(b1) in head_lines  # the GET's length

    serve(t)


# --- timeouts and keep-alive ---------------------------------------------------------------------


def test_a_slowloris_head_is_closed_at_client_header_timeout_without_an_answer():
    async def t(live):
        pacer = live.pacer
        sim0 = pacer.target()
        # one byte every 10 ms (0.2 s of simulated time): the 2 s timer is not restarted by reads
        data = await talk(addr(live, 8080), *[bytes([c]) for c in b"GET /exact HTTP/1.1\r\nHost: a\r\n"], pause=0.01)
        assert data == b""  # nginx closes without an answer; the 408 is in the log
        assert pacer.target() - sim0 >= 2000
        assert live.frontends["node1"].dropped_by == {"client_header_timeout": 1}

    serve(t)


def test_a_stalled_body_is_closed_at_client_body_timeout():
    async def t(live):
        data = await talk(addr(live, 8080), b"POST /item HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert data == b""
        assert live.frontends["node1"].dropped_by == {"client_body_timeout": 1}

    serve(t)


def test_keepalive_requests_and_timeout_and_header():
    async def t(live):
        pacer = live.pacer
        sim0 = pacer.target()
        got = responses(await talk(addr(live, 8080), GET * 4))
        # keepalive_requests 3: the third answer closes; the fourth request is never read
        assert [(s, h["connection"]) for s, h, _ in got] == [(200, "keep-alive"), (200, "keep-alive"), (200, "close")]
        assert got[0][1]["keep-alive"] == "timeout=7"
        # an idle kept-alive connection is closed after keepalive_timeout (2 s)
        assert [s for s, _, _ in responses(await talk(addr(live, 8080), GET))] == [200]
        assert pacer.target() - sim0 >= 2000
        # keepalive_timeout 0 (8081): no keep-alive at all
        assert one(await talk(addr(live, 8081), GET))[1]["connection"] == "close"

    serve(t)


def test_pipelined_requests_are_answered_in_order_and_http10_keepalive_works():
    async def t(live):
        a = addr(live, 8080)
        post = b"POST /exact HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        other = b"GET /a/c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        got = responses(await talk(a, GET + post + other))
        assert [(s, b) for s, _, b in got] == [(200, b"exact"), (200, b"exact"), (200, b"a-c")]
        ka = b"GET /exact HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        got = responses(await talk(a, ka + b"GET /a/c HTTP/1.0\r\n\r\n"))
        assert [(s, h["connection"]) for s, h, _ in got] == [(200, "keep-alive"), (200, "close")]

    serve(t)
