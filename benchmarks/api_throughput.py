"""How fast one node serves ``GET /api/9/http/upstreams/NAME`` next to a bare ASGI app (issue 5).

One node with a 32-peer upstream, after a few simulated seconds of traffic, is served by uvicorn
on 127.0.0.1; a real HTTP load generator (``wrk`` when it is on PATH, else a small keep-alive
client written on asyncio streams, run in its own process) measures requests per second. Then a
bare ASGI app returning the very same bytes is served the same way on the same port and
measured again. Both rates and their ratio are printed; the goal is a ratio of at least 0.6.

    python benchmarks/api_throughput.py [--seconds 5] [--connections 16] [--port 18089]

Not a test: timings depend on the machine, so nothing in the test suite runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/9/http/upstreams/backend"
PEERS = 32

SCENARIO = """
seed: 7
nodes: 1
nginx_conf_inline: |
  worker_processes 2;
  http {
    upstream backend {
      zone backend 256k;
%s
    }
    server {
      listen 80;
      status_zone front;
      location / { proxy_pass http://backend; }
      location /api { api; }
    }
  }
workloads:
  - rate: 400
"""


def build_node():
    """The benchmarked node, after 5 simulated seconds of traffic through its 32 peers."""
    sys.path.insert(0, str(ROOT))
    from sim import cluster, scenario

    servers = "\n".join(f"      server 10.1.0.{i + 1}:80;" for i in range(PEERS))
    sc = scenario.loads(SCENARIO % servers, filename="api_throughput.yaml")
    cl = cluster.Cluster(sc)
    cl.run(5000)
    return cl.nodes["node1"]


def api_app():
    from api.app import create_app

    return create_app(build_node())


def body_bytes() -> bytes:
    """What the API answers for PATH (the model does not move while nothing runs it)."""
    from fastapi.testclient import TestClient

    with TestClient(api_app()) as client:
        response = client.get(PATH)
    response.raise_for_status()
    return response.content


def bare_app(body: bytes):
    """An ASGI app that answers every request with ``body``, and nothing else."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(start)
        await send(message)

    return app


# --------------------------------------------------------------------------------------------------
# Server and load generator processes


def serve(kind: str, port: int) -> None:
    import uvicorn

    app = api_app() if kind == "api" else bare_app(body_bytes())
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            lifespan="off")
    uvicorn.Server(config).run()


async def _client(port: int, path: str, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    n = 0
    try:
        while time.perf_counter() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:60]!r}")
            i = head.lower().find(b"content-length:")
            length = int(head[i + 15 : head.find(b"\r\n", i)])
            await reader.readexactly(length)
            n += 1
    finally:
        counts.append(n)
        writer.close()


async def _load(port: int, path: str, connections: int, seconds: float) -> float:
    counts: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, path, start + seconds, counts) for _ in range(connections)))
    return sum(counts) / (time.perf_counter() - start)


def load(port: int, path: str, connections: int, seconds: float) -> None:
    print(f"{asyncio.run(_load(port, path, connections, seconds)):.1f}")


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def measure(kind: str, port: int, connections: int, seconds: float) -> float:
    """Requests per second of the ``kind`` server ("api" or "bare") under the load generator."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)], env=env)
    try:
        _wait_for_port(port)
        url = f"http://127.0.0.1:{port}{PATH}"
        wrk = shutil.which("wrk")
        if wrk:
            # warm-up, then the measured run
            subprocess.run([wrk, "-t1", f"-c{connections}", "-d1s", url], capture_output=True, check=True)
            out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", url],
                                 capture_output=True, text=True, check=True).stdout
            m = re.search(r"Requests/sec:\s*([\d.]+)", out)
            if not m:
                raise RuntimeError(f"cannot read wrk's output:\n{out}")
            return float(m.group(1))
        cmd = [sys.executable, __file__, "--load", "--port", str(port), "--connections", str(connections)]
        subprocess.run([*cmd, "--seconds", "1"], capture_output=True, check=True, env=env)
        out = subprocess.run([*cmd, "--seconds", str(seconds)], capture_output=True, text=True, check=True,
                             env=env).stdout
        return float(out.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=18089)
    parser.add_argument("--serve", choices=("api", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.load:
        load(args.port, PATH, args.connections, args.seconds)
        return
    generator = "wrk" if shutil.which("wrk") else "asyncio client"
    api_rps = measure("api", args.port, args.connections, args.seconds)
    bare_rps = measure("bare", args.port, args.connections, args.seconds)
    print(f"load generator: {generator}, {args.connections} connections, {args.seconds:g} s each, GET {PATH}")
    print(f"clustersim API ({PEERS} peers): {api_rps:10.1f} req/s")
    print(f"bare ASGI, same bytes:      {bare_rps:10.1f} req/s")
    print(f"ratio: {api_rps / bare_rps:.2f} (goal >= 0.6)")


if __name__ == "__main__":
    main()
