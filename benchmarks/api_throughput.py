"""How fast one node serves ``GET /api/9/http/upstreams/NAME`` next to a bare ASGI app (issue 5).

One node with a 32-peer upstream, after a few simulated seconds of traffic, is served by uvicorn
on 127.0.0.1; a real HTTP load generator (``wrk`` when it is on PATH, else a small keep-alive
client written on asyncio streams, run in its own process) measures requests per second. A bare
ASGI app returning the very same bytes is served the same way on the next port, and the two are
measured in turn, in ``--rounds`` pairs; each pair's ratio is printed, then the medians. The goal
is a ratio of at least 0.6.

The model does not move while the benchmark runs, so the API answers from the body it encoded
for the first request (``api.render.UpstreamBodies``). ``--rerender`` marks the upstream as
changed before every request, so each one rebuilds the body: the change keys of all 32 peers
are compared with those their kept pieces were rendered at (none has changed here, so none is
rendered again and the joined pieces are reused), which is the floor of what a poll of an
upstream under traffic costs.

``--with-traffic`` (issue 17) serves the node live instead (``api.live.LiveCluster``, the model
paced by the wall clock) while the load generator also sends ``--traffic`` (1,000) data-plane
requests per second through the 32-peer upstream, so its counters change between reads; the
baseline is the bare app behind the same live server and the same traffic (the node's API app
replaced by it), so the ratio is the API's own cost. The goal there is at least 0.8. The live
server hands the API's GETs to ``ApiApp.answer_get`` (no ASGI messages) and the bare app's to
ASGI; ``--floor direct`` gives the bare app that same interface too, so the ratio is then the
API's cost above the very least the live server can do for a GET.

Each round also prints the server's CPU time per request (from ``/proc``, Linux), and the
median ratio of those: on a machine shared with other work the rates move with the other
processes' load far more than the CPU times do.

    python benchmarks/api_throughput.py [--seconds 3] [--rounds 3] [--connections 16] [--port 18089]
                                        [--rerender] [--with-traffic [--traffic 1000] [--floor asgi|direct]]

Not a test: timings depend on the machine, so nothing in the test suite runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
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


def build_cluster(port: int | None = None):
    """The benchmarked cluster: with ``port``, listening there and without simulated workload
    (live serving: the load generator's requests are the traffic)."""
    sys.path.insert(0, str(ROOT))
    from sim.cluster import cluster, scenario

    servers = "\n".join(f"      server 10.1.0.{i + 1}:80;" for i in range(PEERS))
    text = SCENARIO % servers
    if port is not None:
        text = text.replace("listen 80;", f"listen {port};").replace("workloads:\n  - rate: 400\n", "")
    return cluster.Cluster(scenario.loads(text, filename="api_throughput.yaml"))


def build_node():
    """The benchmarked node, after 5 simulated seconds of traffic through its 32 peers."""
    cl = build_cluster()
    cl.run(5000)
    return cl.nodes["node1"]


def api_app(rerender: bool = False):
    from api.app import create_app

    node = build_node()
    app = create_app(node)
    if not rerender:
        return app
    up = node.upstreams["backend"]

    async def changing(scope, receive, send):
        up.epoch += 1  # as if traffic had moved a counter: the body must be rendered again
        await app(scope, receive, send)

    return changing


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


def bare_direct_app(body: bytes):
    """:func:`bare_app`, also answering the live server's GETs without ASGI messages (the
    interface of ``api.app.ApiApp.answer_get``)."""
    app = bare_app(body)
    headers = (("Content-Type", "application/json"),)

    async def answer_get(method, path, query_string, pid):
        return 200, headers, body

    app.answer_get = answer_get
    return app


# --------------------------------------------------------------------------------------------------
# Server and load generator processes


def serve_live(kind: str, port: int) -> None:
    """The node served live on 127.0.0.1:``port`` with its API app (``live-api``) or the bare app
    in its place (``live-bare``), until terminated."""
    from api.live import LiveCluster
    from api.live import serve as live_serve

    factory = None
    if kind in ("live-bare", "live-bare-direct"):
        body = body_bytes()
        make = bare_app if kind == "live-bare" else bare_direct_app
        factory = lambda node: make(body)  # noqa: E731
    live = LiveCluster(build_cluster(port), port_offset=0, control_port=0, api_app_factory=factory)
    asyncio.run(live_serve(live, asyncio.Event()))


def serve(kind: str, port: int) -> None:
    if kind.startswith("live"):
        serve_live(kind, port)
        return
    import uvicorn

    app = api_app(kind == "api-rerender") if kind.startswith("api") else bare_app(body_bytes())
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
            lower = head.lower()
            i = lower.find(b"content-length:")
            length = int(head[i + 15 : head.find(b"\r\n", i)])
            await reader.readexactly(length)
            n += 1
            if b"connection: close" in lower:  # keepalive_requests reached: a new connection
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        counts.append(n)
        writer.close()


async def _load(port: int, path: str, connections: int, seconds: float, traffic: float = 0.0) -> float:
    counts: list[int] = []
    start = time.perf_counter()
    jobs = [_client(port, path, start + seconds, counts) for _ in range(connections)]
    if traffic:
        from benchmarks.live_pacing import _data_plane

        jobs.append(_data_plane(("127.0.0.1", port), traffic, seconds, conns=max(4, int(traffic // 50))))
    await asyncio.gather(*jobs)
    return sum(counts) / (time.perf_counter() - start)


def load(port: int, path: str, connections: int, seconds: float, traffic: float = 0.0) -> None:
    print(f"{asyncio.run(_load(port, path, connections, seconds, traffic)):.1f}")


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _start(kind: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)], env=env)


def _rate(port: int, connections: int, seconds: float, traffic: float = 0.0) -> float:
    """Requests per second of the server on ``port`` under the load generator (and ``traffic``
    data-plane requests per second beside it)."""
    url = f"http://127.0.0.1:{port}{PATH}"
    wrk = shutil.which("wrk")
    if wrk and not traffic:
        out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", url],
                             capture_output=True, text=True, check=True).stdout
        m = re.search(r"Requests/sec:\s*([\d.]+)", out)
        if not m:
            raise RuntimeError(f"cannot read wrk's output:\n{out}")
        return float(m.group(1))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--load", "--port", str(port), "--connections", str(connections),
           "--seconds", str(seconds), "--traffic", str(traffic)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of process ``pid`` so far (Linux's /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measured(tuple):
    """One server's measurement: requests per second, and its CPU microseconds per request
    (None where /proc is not there)."""

    @property
    def rate(self) -> float:
        return self[0]

    @property
    def cpu_us(self) -> float | None:
        return self[1]


def _measured(server: subprocess.Popen, port: int, connections: int, seconds: float, traffic: float) -> Measured:
    before = _cpu_seconds(server.pid)
    rate = _rate(port, connections, seconds, traffic)
    after = _cpu_seconds(server.pid)
    # rate * seconds: the requests the load generator had answered (its start-up, around the
    # measured seconds, costs the server next to nothing)
    cpu = None if before is None or after is None or rate <= 0 else 1e6 * (after - before) / (rate * seconds)
    return Measured((rate, cpu))


def measure(api_kind: str, port: int, connections: int, seconds: float, rounds: int, bare_kind: str = "bare",
            traffic: float = 0.0) -> list[tuple[Measured, Measured]]:
    """``rounds`` pairs of (API, bare) measurements, taken one right after the other.

    Both servers run for the whole measurement (each idle while the other is measured), so the
    two rates of a pair see the same machine: on a shared machine the load of other processes
    changes from one second to the next, and a ratio of rates taken minutes apart says more
    about that than about the API. The order alternates from round to round. Each measurement
    also has the server's CPU time per request, which the load of other processes changes far
    less than the rate (on a quiet machine the server is the bottleneck and the two ratios agree).
    """
    servers = [_start(api_kind, port), _start(bare_kind, port + 1)]
    try:
        for p in (port, port + 1):
            _wait_for_port(p)
        for p in (port, port + 1):
            _rate(p, connections, 1.0, traffic)  # warm-up
        pairs = []
        for r in range(rounds):
            if r % 2 == 0:
                api = _measured(servers[0], port, connections, seconds, traffic)
                bare = _measured(servers[1], port + 1, connections, seconds, traffic)
            else:
                bare = _measured(servers[1], port + 1, connections, seconds, traffic)
                api = _measured(servers[0], port, connections, seconds, traffic)
            pairs.append((api, bare))
        return pairs
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of measurements (API, bare)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=18089, help="the API's port; the bare app listens on the next")
    parser.add_argument("--rerender", action="store_true", help="render the upstream afresh for every request")
    parser.add_argument("--with-traffic", action="store_true",
                        help="serve live, with data-plane traffic through the upstream")
    parser.add_argument("--traffic", type=float, default=1000.0, help="--with-traffic: data-plane requests/s")
    parser.add_argument("--floor", choices=("asgi", "direct"), default="asgi",
                        help="--with-traffic: the bare app answers as ASGI, or as directly as the API's GETs")
    parser.add_argument("--serve", choices=("api", "api-rerender", "bare", "live-api", "live-bare",
                                            "live-bare-direct"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.load:
        load(args.port, PATH, args.connections, args.seconds, args.traffic)
        return
    if args.with_traffic:
        bare_kind = "live-bare" if args.floor == "asgi" else "live-bare-direct"
        pairs = measure("live-api", args.port, args.connections, args.seconds, args.rounds, bare_kind,
                        args.traffic)
        label, goal = f"served live, {args.traffic:g} data-plane requests/s through it", 0.8
    else:
        pairs = measure("api-rerender" if args.rerender else "api", args.port, args.connections, args.seconds,
                        args.rounds)
        label, goal = "rendered each time" if args.rerender else "body reused", 0.6
    generator = "wrk" if shutil.which("wrk") and not args.with_traffic else "asyncio client"
    print(f"load generator: {generator}, {args.connections} connections, {args.rounds} rounds of "
          f"{args.seconds:g} s each, GET {PATH}")
    for api, bare in pairs:
        cpu = ""
        if api.cpu_us is not None and bare.cpu_us is not None:
            cpu = f"   server CPU/request API {api.cpu_us:6.1f} us  bare {bare.cpu_us:6.1f} us"
        print(f"  API {api.rate:10.1f} req/s   bare {bare.rate:10.1f} req/s   ratio {api.rate / bare.rate:.2f}{cpu}")
    ratios = sorted(api.rate / bare.rate for api, bare in pairs)
    print(f"clustersim API ({PEERS} peers, {label}): {statistics.median(a.rate for a, _ in pairs):10.1f} req/s "
          "(median)")
    floor = "bare app answering directly" if args.with_traffic and args.floor == "direct" else "bare ASGI"
    print(f"{floor}, same bytes: {statistics.median(b.rate for _, b in pairs):10.1f} req/s (median)")
    print(f"ratio: {statistics.median(ratios):.2f} (median of the rounds; goal >= {goal})")
    if all(a.cpu_us is not None and b.cpu_us is not None for a, b in pairs):
        cpu_ratios = [b.cpu_us / a.cpu_us for a, b in pairs if a.cpu_us]
        print(f"CPU ratio (bare's server CPU per request / the API's): {statistics.median(cpu_ratios):.2f} "
              "(median; what the rate ratio is on a quiet machine)")

if __name__ == "__main__":
    main()
