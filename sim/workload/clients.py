"""Simulated clients: open-loop HTTP traffic at the nodes.

Each workload sends requests to each of its nodes independently of how fast they answer (an
open loop, so overload shows as queueing rather than as a slower client). Arrivals are Poisson
or evenly spaced at a constant rate or along a piecewise-linear rate curve (a non-homogeneous
Poisson process by thinning). URLs follow a Zipf popularity over ``count`` paths; request sizes
come from a distribution; client connections are kept alive for ``keepalive_requests``
requests and closed when idle longer than the node's ``keepalive_timeout``; a share of requests
can carry ``nocache=1`` (cookie and argument) so ``proxy_cache_bypass`` has something to see.

Random numbers are drawn in numpy batches; one arrival costs one simpy event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from simpy.events import Timeout

from sim.core import dists
from sim.core.eventq import FastEvent, FastQueue
from sim.core.rng import Draws
from sim.http.traffic import ClientConn, Request
from sim.node.node import Node
from sim.workload.arrivals import rate_at
from sim.zones.status import CodeCounts


@dataclass(frozen=True)
class PathSpec:
    count: int = 100
    zipf: float = 1.0  # exponent; 0 = uniform
    prefix: str = "/item/"
    explicit: tuple[str, ...] = ()  # a fixed list of paths instead of generated ones


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    nodes: tuple[str, ...] | None = None  # None: every node
    rate: float = 100.0  # requests per second per node
    rate_curve: tuple[tuple[float, float], ...] = ()  # (t_ms, req/s) points, linear in between
    arrivals: str = "poisson"  # "poisson" | "constant"
    host: str = "localhost"
    port: int = 80
    paths: PathSpec = field(default_factory=PathSpec)
    request_size: dists.DistSpec = dists.DistSpec("constant", (300.0,))
    keepalive_requests: int = 1
    clients: int = 1000
    bypass_share: float = 0.0
    ssl_session_reuse: float = 0.0
    ssl_handshake_failure: float = 0.0
    start_ms: float = 0.0
    stop_ms: float | None = None


class WorkloadStats:
    """What the clients of one workload saw at one node."""

    __slots__ = ("sent", "completed", "refused", "discarded", "codes")

    def __init__(self) -> None:
        self.sent = 0
        self.completed = 0
        self.refused = 0
        self.discarded = 0
        self.codes = CodeCounts()

    @property
    def statuses(self) -> dict[int, int]:
        """Completed requests by response status."""
        return self.codes.as_dict()


class Workload:
    """Drives one :class:`WorkloadSpec` against its nodes."""

    def __init__(self, env, spec: WorkloadSpec, nodes: list, streams):
        self.env = env
        self.spec = spec
        self.nodes = nodes
        self.stats = {n.name: WorkloadStats() for n in nodes}
        # what every node's clients share: the URLs with their Zipf weights, and each client's
        # address (written when first needed); one copy keeps the per-request reads in cache
        n = spec.paths.count if not spec.paths.explicit else len(spec.paths.explicit)
        if spec.paths.explicit:
            self.paths: list[str] = list(spec.paths.explicit)
        else:
            self.paths = [f"{spec.paths.prefix}{i}" for i in range(n)]
        ranks = np.arange(1, n + 1, dtype=float)
        probs = ranks ** (-spec.paths.zipf) if spec.paths.zipf else np.ones(n)
        self.path_probs = probs / probs.sum()
        # what numpy's Generator.choice(n, k, p=path_probs) computes on every call, once: the
        # draws below are its values (a uniform per draw, searched in this cdf) without its
        # per-call checks of p, which cost more than the draws
        cdf = self.path_probs.cumsum()
        cdf /= cdf[-1]
        self.path_cdf = cdf
        self.client_ips: list[str | None] = [None] * max(1, spec.clients)
        self._drivers = [_NodeDriver(self, n, streams.get(f"workload/{spec.name}/{n.name}")) for n in nodes]

    def start(self) -> None:
        for d in self._drivers:
            d.start()

    def path_indexes(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """``k`` Zipf-distributed indexes into ``paths``: what ``rng.choice(len(paths), k,
        p=path_probs)`` returns (the same values, from the same uniforms)."""
        return self.path_cdf.searchsorted(rng.random(k), side="right")


class _Arrival(FastEvent):
    """The next request of one node driver (one event, queued again each time it fires)."""

    def __init__(self, driver: _NodeDriver) -> None:
        super().__init__()
        self.driver = driver

    def fire(self) -> None:
        self.driver._arrive()


class _NodeDriver:
    def __init__(self, workload: Workload, node: Node, rng: np.random.Generator) -> None:
        self.w = workload
        self.spec: WorkloadSpec = workload.spec
        spec = self.spec
        self.node = node
        self.env: Any = workload.env
        self.fq: FastQueue = workload.env.fast  # the fast lane of sim.core.environment.Environment
        self.stats: WorkloadStats = workload.stats[node.name]
        self.pool: deque[ClientConn] = deque()
        self._u = Draws(rng.random)
        self._exp = Draws(rng.standard_exponential)
        self.paths = workload.paths
        self._path = Draws(lambda k: workload.path_indexes(rng, k))
        self._client = Draws(lambda k: rng.integers(0, max(1, spec.clients), k))
        self._size = spec.request_size.draws(rng)
        self._ips = workload.client_ips
        self.max_rate: float = max([spec.rate] if not spec.rate_curve else [r for _, r in spec.rate_curve])
        http = node.conf.http
        self.keepalive_timeout = float(http.keepalive_timeout_ms if http else 75_000)
        self.ssl = self._listens_ssl()
        self._constant = spec.arrivals == "constant"
        # one event serves every arrival in turn (it is rescheduled as it fires)
        self._arrival = _Arrival(self)
        self._done_cb = self._done  # built once, not a bound method per request

    def _listens_ssl(self) -> bool:
        http = self.node.conf.http
        if not http:
            return False
        for s in http.servers:
            for lst in s.listens:
                if lst.port == self.spec.port and lst.ssl:
                    return True
        return False

    def start(self) -> None:
        if self.max_rate <= 0:
            return
        delay = self.spec.start_ms - self.env.now
        self._schedule(max(delay, 0.0) + self._gap())
        ev = Timeout(self.env, 1000.0)
        ev.callbacks.append(self._sweep)

    def _gap(self) -> float:
        if self.spec.arrivals == "constant":
            return 1000.0 / self.max_rate
        return self._exp.next() * 1000.0 / self.max_rate

    def _schedule(self, delay: float) -> None:
        stop = self.spec.stop_ms
        if stop is not None and self.fq.now + delay >= stop:
            return
        self.fq.push(self._arrival, delay)

    def _arrive(self) -> None:
        spec = self.spec
        # the next arrival first, as _schedule(_gap()) does it (inlined: this runs per request)
        if self._constant:
            gap = 1000.0 / self.max_rate
        else:
            e = self._exp.next()
            gap = e * 1000.0 / self.max_rate
        stop = spec.stop_ms
        fq = self.fq
        if stop is None or fq.now + gap < stop:
            fq.push(self._arrival, gap)
        if spec.rate_curve:
            r = rate_at(spec.rate_curve, fq.now)
            u = self._u.next()
            if u * self.max_rate >= r:
                return
        self.send()

    def _sweep(self, _ev: Any) -> None:
        """Close idle connections past keepalive_timeout (a cheap once-a-second pass)."""
        now = self.env.now
        pool = self.pool
        limit = self.keepalive_timeout
        while pool and (not pool[0].open or now - pool[0].idle_since >= limit):
            conn = pool.popleft()
            self.node.close_conn(conn)
        ev = Timeout(self.env, 1000.0)
        ev.callbacks.append(self._sweep)

    def _connection(self) -> ClientConn | None:
        pool = self.pool
        node = self.node
        while pool:
            conn = pool.pop()  # most recently idle first, as a browser reuses its warm connection
            if conn.open:
                return conn
        spec = self.spec
        if self.ssl:
            fail = "handshake_timeout" if spec.ssl_handshake_failure and self._u.next() < spec.ssl_handshake_failure else None
            reuse = bool(spec.ssl_session_reuse) and self._u.next() < spec.ssl_session_reuse
            return node.open_conn(ssl=True, reuse_session=reuse, handshake_fail=fail)
        return node.open_conn()

    def send(self) -> None:
        spec = self.spec
        stats = self.stats
        stats.sent += 1
        # a warm connection from the pool without the call to _connection (the common case)
        pool = self.pool
        conn = pool[-1] if pool else None
        if conn is not None and conn.open:
            pool.pop()
        else:
            conn = self._connection()
            if conn is None:
                stats.refused += 1
                return
        c = self._client.next_int()
        ip = self._ips[c]
        if ip is None:
            ip = self._ips[c] = f"10.{(c >> 16) & 255}.{(c >> 8) & 255}.{c & 255}"
        p = self._path.next_int()
        path = self.paths[p]
        node = self.node
        if spec.bypass_share and self._u.next() < spec.bypass_share:
            vars = {"$cookie_nocache": "1", "$arg_nocache": "1"}
            req = node.handle(conn, path + "?nocache=1", spec.host, spec.port, ip, int(self._size.next()),
                              self._done_cb, vars=vars)
        else:  # no keyword arguments on the common path: they make the call slower
            req = node.handle(conn, path, spec.host, spec.port, ip, int(self._size.next()), self._done_cb)
        if req is None:
            stats.refused += 1
            self.node.close_conn(conn)

    def _done(self, req: Request) -> None:
        stats = self.stats
        conn = req.conn
        status = req.status
        if status:
            stats.completed += 1
            stats.codes.add(status)
        else:
            stats.discarded += 1
        if conn is None or not conn.open:
            return
        if conn.requests >= self.spec.keepalive_requests or not status:
            self.node.close_conn(conn)
        else:
            self.node.idle_conn(conn)
            self.pool.append(conn)
