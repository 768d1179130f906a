"""Live pacing under rising load (a measurement, not a test).

Serves ``scenarios/loadtest-traffic-counters.yaml`` with ``clustersim serve`` in a subprocess
(pinned to one core when the system allows), then drives it at rising data-plane rates with a
small asyncio HTTP client (keep-alive connections, requests spread evenly in time), while one
more connection polls a node's API as fast as it answers (``--no-api`` leaves it out). Per load
level it prints the data-plane requests/s achieved, the pacer's lag p50/p99 (how late simulated
events ran behind the wall clock, every event counted, from the control endpoint's ``/time``),
the p99 of the per-step lag (one sample per pacer step: how late the oldest due event ran, the
measure used before per-event lag), and the API's GET rate.

Goal (issue 6): lag p99 <= 5 ms at 1,000 data-plane requests/s on one core.

``--find-max`` (issue 17) raises the data-plane rate step by step (without the API poller) and
prints the highest rate the node sustained (at least 97 % of the target answered) with pacer lag
p99 <= 2 ms, with the lag percentiles of every step; the goal is at least 5,000 requests/s on one
core.

``--abuse`` (issue 17) serves the same cluster with ``client_max_body_size 20m`` and, for
``--abuse-seconds`` (30), has one connection upload 10 MB bodies one after another and another
send a request head one byte per second (slowloris), while the data plane carries
``--abuse-rate`` requests/s; it prints the pacer lag percentiles (goal: p99 < 2 ms) and how many
uploads were answered.

    python -m benchmarks.live_pacing [--levels 250,500,1000,2000] [--seconds 4]
    python -m benchmarks.live_pacing --find-max [--start 2000] [--step 1.25]
    python -m benchmarks.live_pacing --abuse [--abuse-seconds 30] [--abuse-rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clustersim.serve_cmd import LOADTESTS, start_serve, stop_serve  # noqa: E402


class _Conn:
    """A keep-alive client connection that opens a new one when the server closes it (nginx
    does after ``keepalive_requests``, 1,000 by default)."""

    def __init__(self, addr: tuple[str, int]):
        self.addr = addr
        self.reader = self.writer = None

    async def get(self, path: bytes, host: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(*self.addr)
        self.writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n"):
            lower = line.lower()
            if lower[:15] == b"content-length:":
                length = int(line[15:])
            elif lower == b"connection: close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _data_plane(addr: tuple[str, int], rate: float, seconds: float, conns: int) -> int:
    """``rate`` requests/s for ``seconds`` over ``conns`` connections; returns requests answered."""
    done = 0
    per_conn = rate / conns
    t_end = time.perf_counter() + seconds

    async def one(k: int):
        nonlocal done
        conn = _Conn(addr)
        t_next = time.perf_counter() + k / rate
        i = 0
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            if t_next > now:
                await asyncio.sleep(t_next - now)
            t_next += 1.0 / per_conn
            await conn.get(b"/item/%d" % (i % 500), b"app.example.com")
            done += 1
            i += 1
        conn.close()

    await asyncio.gather(*(one(k) for k in range(conns)))
    return done


async def _api_poll(addr: tuple[str, int], path: bytes, stop: asyncio.Event) -> int:
    conn = _Conn(addr)
    n = 0
    while not stop.is_set():
        await conn.get(path, b"localhost")
        n += 1
    conn.close()
    return n


def _control(url: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"" if method == "POST" else None),
                                timeout=10) as r:
        return json.loads(r.read())


async def _level(info: dict, rate: float, seconds: float, api_poll: bool = True) -> dict:
    node = info["nodes"][0]
    data = next(b for b in node["listens"] if b["config_port"] == 8080)
    api = next(b for b in node["listens"] if b["config_port"] == 8081)
    _control(info["control"] + "/pacer/reset", "POST")
    stop = asyncio.Event()
    poller = None
    if api_poll:
        poller = asyncio.create_task(_api_poll((api["address"], api["port"]), b"/api/9/http/server_zones", stop))
    t0 = time.perf_counter()
    answered = await _data_plane((data["address"], data["port"]), rate, seconds, conns=max(4, int(rate // 50)))
    elapsed = time.perf_counter() - t0
    stop.set()
    gets = await poller if poller is not None else 0
    times = _control(info["control"] + "/time")
    lag, step_lag = times["lag"], times.get("step_lag") or {}
    return {"target_rps": rate, "rps": answered / elapsed, "lag_p50_ms": lag["p50_ms"], "lag_p99_ms": lag["p99_ms"],
            "step_lag_p99_ms": step_lag.get("p99_ms"), "api_gets_per_s": gets / elapsed}


async def _upload_loop(addr: tuple[str, int], stop: asyncio.Event, size: int = 10 * 1024 * 1024) -> int:
    """10 MB bodies, one after another on one connection, until ``stop``; returns uploads answered."""
    reader, writer = await asyncio.open_connection(*addr)
    piece = b"b" * (1024 * 1024)
    n = 0
    while not stop.is_set():
        writer.write(b"POST /upload HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(piece)):
            writer.write(piece)
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(ln[15:]) for ln in head.split(b"\r\n") if ln[:15].lower() == b"content-length:"), 0)
        await reader.readexactly(length)
        n += 1
    writer.close()
    return n


async def _slowloris(addr: tuple[str, int], stop: asyncio.Event) -> int:
    """A request head sent one byte per second until ``stop``; returns the bytes sent."""
    reader, writer = await asyncio.open_connection(*addr)
    head = b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Slow: " + b"s" * 10_000
    sent = 0
    while not stop.is_set() and sent < len(head):
        writer.write(head[sent : sent + 1])
        sent += 1
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    writer.close()
    return sent


async def _abuse(info: dict, rate: float, seconds: float) -> dict:
    node = info["nodes"][0]
    data = next(b for b in node["listens"] if b["config_port"] == 8080)
    a = (data["address"], data["port"])
    _control(info["control"] + "/pacer/reset", "POST")
    stop = asyncio.Event()
    uploads = asyncio.create_task(_upload_loop(a, stop))
    slow = asyncio.create_task(_slowloris(a, stop))
    t0 = time.perf_counter()
    answered = await _data_plane(a, rate, seconds, conns=max(4, int(rate // 50)))
    elapsed = time.perf_counter() - t0
    times = _control(info["control"] + "/time")
    stop.set()
    return {"rps": answered / elapsed, "lag": times["lag"], "uploads": await uploads, "slow_bytes": await slow}


def _abuse_scenario() -> str:
    """The traffic-counters scenario with ``client_max_body_size 20m`` (a 10 MB body is read)."""
    path = ROOT / LOADTESTS["traffic_counters"][0]
    doc = yaml.safe_load(path.read_text())
    conf = (path.parent / doc.pop("nginx_conf")).read_text()
    doc["nginx_conf_inline"] = conf.replace("http {", "http {\n    client_max_body_size 20m;", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        yaml.safe_dump(doc, tmp)
    return tmp.name


def _pin(proc) -> bool:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(proc.pid, {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
        return True
    return False


def _row(r: dict) -> str:
    return (f"{r['target_rps']:9.0f} {r['rps']:11.1f} {r['lag_p50_ms'] or 0:11.3f} {r['lag_p99_ms'] or 0:11.3f} "
            f"{r['step_lag_p99_ms'] or 0:12.3f} {r['api_gets_per_s']:10.1f}")


_HEADER = (f"{'target/s':>9} {'achieved/s':>11} {'lag p50 ms':>11} {'lag p99 ms':>11} {'step p99 ms':>12} "
           f"{'API GET/s':>10}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="250,500,1000,2000")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--address-base", default="127.9.9.11")
    p.add_argument("--no-api", action="store_true", help="leave the API poller out")
    p.add_argument("--find-max", action="store_true", help="the highest data-plane rate with lag p99 <= 2 ms")
    p.add_argument("--start", type=float, default=2000.0, help="--find-max: the first rate")
    p.add_argument("--step", type=float, default=1.25, help="--find-max: factor between rates")
    p.add_argument("--abuse", action="store_true", help="a 10 MB uploader and a slowloris client under load")
    p.add_argument("--abuse-seconds", type=float, default=30.0)
    p.add_argument("--abuse-rate", type=float, default=1000.0)
    args = p.parse_args(argv)
    scenario = _abuse_scenario() if args.abuse else str(ROOT / LOADTESTS["traffic_counters"][0])
    proc, info = start_serve(scenario, ["--control-port", "0", "--address-base", args.address_base])
    pinned = _pin(proc)
    try:
        print(f"server pinned to one core: {'yes' if pinned else 'no'}")
        if args.abuse:
            r = asyncio.run(_abuse(info, args.abuse_rate, args.abuse_seconds))
            lag = r["lag"]
            print(f"{args.abuse_seconds:g} s at {args.abuse_rate:g} requests/s (achieved {r['rps']:.1f}) with a 10 MB "
                  f"uploader ({r['uploads']} uploads answered) and a slowloris client ({r['slow_bytes']} bytes sent)")
            print(f"pacer lag: p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms "
                  f"({lag['count']} events); goal p99 < 2 ms: {'met' if (lag['p99_ms'] or 0) < 2 else 'not met'}")
            return 0
        print(_HEADER)
        if args.find_max:
            best, rate = None, args.start
            while True:
                r = asyncio.run(_level(info, rate, args.seconds, api_poll=False))
                ok = r["rps"] >= 0.97 * rate and (r["lag_p99_ms"] or 0) <= 2.0
                print(_row(r) + ("" if ok else "   <- over"), flush=True)
                if not ok:
                    break
                best, rate = r, rate * args.step
            if best is None:
                print(f"not even {args.start:g} requests/s with lag p99 <= 2 ms")
            else:
                print(f"highest rate with lag p99 <= 2 ms: {best['rps']:.0f} requests/s "
                      f"(lag p50 {best['lag_p50_ms']} ms, p99 {best['lag_p99_ms']} ms); goal 5000: "
                      f"{'met' if best['rps'] >= 5000 else 'not met'}")
            return 0
        for level in (float(x) for x in args.levels.split(",")):
            print(_row(asyncio.run(_level(info, level, args.seconds, api_poll=not args.no_api))), flush=True)
    finally:
        stop_serve(proc)
        if args.abuse:
            os.unlink(scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
