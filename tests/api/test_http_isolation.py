"""No single client stalls the model: a 10 MB body is read in bounded pieces without being kept,
while a slowloris client on another connection is closed by client_header_timeout and the pacer
keeps stepping. Structural assertions only; the lag figures are in benchmarks/live_pacing.py
(``--abuse``), since a 2 ms bound cannot be asserted on a shared CI machine."""

from __future__ import annotations

import asyncio

from test_http_rules import addr, responses, served

from api.live.http import HttpConnection
from sim.cluster import scenario
from sim.cluster.cluster import Cluster

CONF = """
http {
    upstream backend { zone backend 64k; server 10.0.0.1:80; }
    server {
        listen 8080;
        client_header_timeout 2s;
        location / { proxy_pass http://backend; }
        location /upload/ { client_max_body_size 20m; client_body_timeout 60s; proxy_pass http://backend; }
    }
}
"""


def _cluster() -> Cluster:
    conf = "\n".join("  " + line for line in CONF.splitlines())
    text = (f"seed: 5\nsample_interval: 1h\nnodes: 1\nnginx_conf_inline: |\n{conf}\n"
            "backend_defaults:\n  service_time: 2\n  response_size: 100\n  status_mix: {200: 1.0}\n")
    return Cluster(scenario.loads(text), sample=False)


def test_a_10mb_body_and_a_slowloris_client_do_not_stall_the_model(monkeypatch):
    pieces: list[int] = []
    kept: list[int] = []
    parse = HttpConnection._parse

    def spy(self, start, stop):
        pieces.append(stop - start)
        if self._req is not None:
            kept.append(len(self._req.body))
        return parse(self, start, stop)

    monkeypatch.setattr(HttpConnection, "_parse", spy)
    size = 10 * 1024 * 1024

    async def t(live):
        a = addr(live, 8080)
        pacer = live.pacer
        fe = live.frontends["node1"]

        async def slowloris():
            reader, writer = await asyncio.open_connection(*a)
            got = b""
            for c in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 200:
                try:
                    writer.write(bytes([c]))
                    await writer.drain()
                except ConnectionError:
                    break
                got += await _maybe_read(reader)
                if reader.at_eof():
                    break
                await asyncio.sleep(0.005)
            writer.close()
            return got

        async def upload():
            reader, writer = await asyncio.open_connection(*a)
            writer.write(b"POST /upload/file HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            steps = []
            piece = b"b" * (256 * 1024)
            for _ in range(size // len(piece)):
                writer.write(piece)
                await writer.drain()
                steps.append(pacer.steps)
                await asyncio.sleep(0.005)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            body = await asyncio.wait_for(reader.readexactly(100), 10)
            writer.close()
            return head + body, steps

        sim0 = pacer.target()
        slow, (answer, steps) = await asyncio.gather(slowloris(), upload())
        assert slow == b""  # closed without an answer, as nginx does
        assert fe.dropped_by == {"client_header_timeout": 1}
        assert pacer.target() - sim0 >= 2000
        [(status, _, _)] = responses(answer)
        assert status == 200
        # the upload, and the slowloris head nginx logs as a 408 when it closes it
        assert live.cluster.nodes["node1"].requests_total == 2
        assert max(steps) > min(steps)  # the pacer stepped while the body was arriving

    served(_cluster(), t, speed=20.0)
    assert sum(pieces) >= size
    assert max(pieces) <= 256 * 1024 + 4096  # no piece larger than one socket read
    assert max(kept) == 0  # a proxied body is counted, not kept


async def _maybe_read(reader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(1024), 0.001)
    except TimeoutError:
        return b""
