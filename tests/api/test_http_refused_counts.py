"""Requests refused on the live wire count in the node's counters, as nginx logs them.

nginx creates a request as soon as the first byte of it arrives, and a request it refuses while
reading the head (400, 414, a 413 decided from the head) or closes at a timeout is finalized and
logged like any other: it is in ``/http/requests``, and in the zone of the server that handled
it: the default server of the address and port until the ``Host`` line was read, the server
``Host`` names after. A 408 (or a client gone mid-request) sends nothing and counts as
``discarded``. Each test sends raw bytes, then reads the counters through the node's own API, on
a port of its own so that reading them changes nothing the test checks (docs/live.md).
"""

from __future__ import annotations

import asyncio
import json

from live_harness import served
from test_http_rules import one, responses, talk

from sim.cluster import scenario
from sim.cluster.cluster import Cluster

CONF = """
http {
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server {
        listen 8080;
        status_zone front;
        client_header_timeout 2s;
        large_client_header_buffers 2 1k;
        location / { return 200 "front"; }
    }
    server {
        listen 8080;
        server_name named.example;
        status_zone named;
        client_header_timeout 2s;
        client_max_body_size 1k;
        location / { return 200 "named"; }
        location /upload { status_zone uploads; proxy_pass http://backend; }
    }
    server {
        listen 8090;
        location /api { api; }
    }
}
"""


def _cluster() -> Cluster:
    conf = "\n".join("  " + line for line in CONF.splitlines())
    text = (f"seed: 5\nsample_interval: 1h\nnodes: 1\nnginx_conf_inline: |\n{conf}\n"
            "backend_defaults:\n  service_time: 2\n  status_mix: {200: 1.0}\n")
    return Cluster(scenario.loads(text), sample=False)


def _addr(live, port: int) -> tuple[str, int]:
    for b in live.frontends["node1"].bindings:
        if b.port == port:
            return b.bind_address, b.bind_port
    raise LookupError(port)


async def _api(live, path: str):
    status, _, body = one(await talk(_addr(live, 8090), f"GET /api/9{path} HTTP/1.0\r\n\r\n".encode()))
    assert status == 200
    return json.loads(body)


def _serve(test):
    return served(_cluster(), test, speed=20.0)


EMPTY = {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "codes": {}, "total": 0}


def _zone(requests: int, codes: dict[str, int], discarded: int, received: int, sent: int) -> dict:
    responses_ = dict(EMPTY, codes=codes, total=sum(codes.values()))
    for code, n in codes.items():
        responses_[code[0] + "xx"] += n
    return {"processing": 0, "requests": requests, "responses": responses_, "discarded": discarded,
            "received": received, "sent": sent}


def test_a_request_without_host_counts_as_a_400_of_the_default_server():
    sent = b"GET /x HTTP/1.1\r\n\r\n"

    async def t(live):
        answer = await talk(_addr(live, 8080), sent)
        assert one(answer)[0] == 400
        zones = await _api(live, "/http/server_zones")
        assert zones["front"] == _zone(1, {"400": 1}, 0, len(sent), len(answer))
        assert zones["named"] == _zone(0, {}, 0, 0, 0)
        # the refused request, the GET of the zones and this one (being answered)
        assert await _api(live, "/http/requests") == {"total": 3, "current": 1}

    _serve(t)


def test_content_length_with_transfer_encoding_counts_in_the_server_host_chose():
    sent = (b"POST /x HTTP/1.1\r\nHost: named.example\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")

    async def t(live):
        answer = await talk(_addr(live, 8080), sent)
        assert one(answer)[0] == 400
        zones = await _api(live, "/http/server_zones")
        assert zones["named"] == _zone(1, {"400": 1}, 0, len(sent), len(answer))
        assert zones["front"]["requests"] == 0

    _serve(t)


def test_a_duplicate_content_length_counts_where_the_host_line_was_read_by_then():
    before = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\nHost: named.example\r\n\r\nx"
    after = b"POST /x HTTP/1.1\r\nHost: named.example\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"

    async def t(live):
        first = await talk(_addr(live, 8080), before)
        second = await talk(_addr(live, 8080), after)
        assert one(first)[0] == one(second)[0] == 400
        zones = await _api(live, "/http/server_zones")
        # nginx stops at the second Content-Length line: the bytes after it were not read
        head_before = before.index(b"Host:")
        head_after = after.rindex(b"Content-Length")
        assert zones["front"]["requests"] == 1 and zones["front"]["responses"]["codes"] == {"400": 1}
        assert zones["named"]["requests"] == 1 and zones["named"]["responses"]["codes"] == {"400": 1}
        assert head_before <= zones["front"]["received"] <= len(before)
        assert head_after <= zones["named"]["received"] <= len(after)
        assert (zones["front"]["sent"], zones["named"]["sent"]) == (len(first), len(second))

    _serve(t)


def test_a_too_long_request_line_counts_as_a_414_of_the_default_server():
    sent = b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: named.example\r\n\r\n"

    async def t(live):
        answer = await talk(_addr(live, 8080), sent)
        assert one(answer)[0] == 414
        front = (await _api(live, "/http/server_zones"))["front"]
        assert (front["requests"], front["responses"]["codes"], front["sent"]) == (1, {"414": 1}, len(answer))
        assert 0 < front["received"] <= len(sent)

    _serve(t)


def test_a_too_large_header_after_host_counts_as_a_400_of_that_server():
    # larger than one of the named server's large buffers (4 8k), which apply after its Host line
    sent = b"GET / HTTP/1.1\r\nHost: named.example\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"

    async def t(live):
        answer = await talk(_addr(live, 8080), sent)
        status, _, body = one(answer)
        assert status == 400 and b"Request Header Or Cookie Too Large" in body
        named = (await _api(live, "/http/server_zones"))["named"]
        assert (named["requests"], named["responses"]["codes"], named["sent"]) == (1, {"400": 1}, len(answer))

    _serve(t)


def test_a_413_decided_from_the_head_counts_in_the_server_and_the_location_zone():
    sent = b"POST /upload HTTP/1.1\r\nHost: named.example\r\nContent-Length: 5000\r\n\r\n"

    async def t(live):
        answer = await talk(_addr(live, 8080), sent, limit=0.5)
        assert one(answer)[0] == 413
        zones = await _api(live, "/http/server_zones")
        assert zones["named"] == _zone(1, {"413": 1}, 0, len(sent), len(answer))
        uploads = (await _api(live, "/http/location_zones"))["uploads"]
        assert uploads == {"requests": 1, "responses": dict(EMPTY, codes={"413": 1}, total=1, **{"4xx": 1}),
                           "discarded": 0, "received": len(sent), "sent": len(answer)}
        assert live.cluster.nodes["node1"].upstreams["backend"].peers[0].requests == 0

    _serve(t)


def test_a_head_timed_out_is_a_discarded_request_and_an_idle_connection_is_none():
    # (the parser hands a header line over when the next one begins: docs/live.md)
    partial = b"GET / HTTP/1.1\r\nHost: named.example\r\nX-Slow: 1"

    async def t(live):
        timed_out, idle = await asyncio.gather(talk(_addr(live, 8080), partial), talk(_addr(live, 8080)))
        assert timed_out == idle == b""  # both closed at client_header_timeout, without an answer
        zones = await _api(live, "/http/server_zones")
        assert zones["named"] == _zone(1, {}, 1, len(partial), 0)
        assert zones["front"] == _zone(0, {}, 0, 0, 0)
        assert await _api(live, "/http/requests") == {"total": 3, "current": 1}
        connections = await _api(live, "/connections")
        # the two closed, the two API connections before this one, and this one (active)
        assert (connections["accepted"], connections["active"], connections["idle"]) == (5, 1, 0)
        assert live.frontends["node1"].dropped_by == {"client_header_timeout": 2}

    _serve(t)


def test_a_client_gone_in_the_middle_of_a_head_is_a_discarded_request():
    partial = b"GET / HTTP/1.1\r\nX-A: 1\r\n"

    async def t(live):
        reader, writer = await asyncio.open_connection(*_addr(live, 8080))
        writer.write(partial)
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.close()
        await asyncio.sleep(0.02)
        zones = await _api(live, "/http/server_zones")
        assert zones["front"] == _zone(1, {}, 1, len(partial), 0)

    _serve(t)


def test_refused_and_served_requests_add_up_on_one_kept_alive_connection():
    good = b"GET / HTTP/1.1\r\nHost: named.example\r\n\r\n"
    bad = b"GET / HTTP/1.1\r\nHost: named.example\r\nContent-Length: -5\r\n\r\n"

    async def t(live):
        answers = responses(await talk(_addr(live, 8080), good + good + bad))
        assert [a[0] for a in answers] == [200, 200, 400]
        named = (await _api(live, "/http/server_zones"))["named"]
        assert (named["requests"], named["responses"]["codes"]) == (3, {"200": 2, "400": 1})
        assert named["received"] == 2 * len(good) + len(bad)
        assert await _api(live, "/http/requests") == {"total": 5, "current": 1}

    _serve(t)
