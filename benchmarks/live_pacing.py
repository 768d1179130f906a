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

    python -m benchmarks.live_pacing [--levels 250,500,1000,2000] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clustersim.serve_cmd import LOADTESTS, start_serve, stop_serve  # noqa: E402


async def _get(reader, writer, path: bytes, host: bytes) -> int:
    writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _data_plane(addr: tuple[str, int], rate: float, seconds: float, conns: int) -> int:
    """``rate`` requests/s for ``seconds`` over ``conns`` connections; returns requests answered."""
    done = 0
    per_conn = rate / conns
    t_end = time.perf_counter() + seconds

    async def one(k: int):
        nonlocal done
        reader, writer = await asyncio.open_connection(*addr)
        t_next = time.perf_counter() + k / rate
        i = 0
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            if t_next > now:
                await asyncio.sleep(t_next - now)
            t_next += 1.0 / per_conn
            await _get(reader, writer, b"/item/%d" % (i % 500), b"app.example.com")
            done += 1
            i += 1
        writer.close()

    await asyncio.gather(*(one(k) for k in range(conns)))
    return done


async def _api_poll(addr: tuple[str, int], path: bytes, stop: asyncio.Event) -> int:
    reader, writer = await asyncio.open_connection(*addr)
    n = 0
    while not stop.is_set():
        await _get(reader, writer, path, b"localhost")
        n += 1
    writer.close()
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="250,500,1000,2000")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--address-base", default="127.9.9.11")
    p.add_argument("--no-api", action="store_true", help="leave the API poller out")
    args = p.parse_args(argv)
    scenario = str(ROOT / LOADTESTS["traffic_counters"][0])
    proc, info = start_serve(scenario, ["--control-port", "0", "--address-base", args.address_base])
    pinned = False
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(proc.pid, {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
        pinned = True
    try:
        print(f"server pinned to one core: {'yes' if pinned else 'no'}; {args.seconds:g} s per level")
        print(f"{'target/s':>9} {'achieved/s':>11} {'lag p50 ms':>11} {'lag p99 ms':>11} {'step p99 ms':>12} "
              f"{'API GET/s':>10}")
        for level in (float(x) for x in args.levels.split(",")):
            r = asyncio.run(_level(info, level, args.seconds, api_poll=not args.no_api))
            print(f"{r['target_rps']:9.0f} {r['rps']:11.1f} {r['lag_p50_ms'] or 0:11.3f} {r['lag_p99_ms'] or 0:11.3f} "
                  f"{r['step_lag_p99_ms'] or 0:12.3f} {r['api_gets_per_s']:10.1f}", flush=True)
    finally:
        stop_serve(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
