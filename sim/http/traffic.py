"""The objects one client request is made of inside a node: its worker, its client connection,
the :class:`Request` itself, and the node's latency histogram.

They are created and touched once or more per simulated request, so this module is one of the
hot-path modules compiled with mypyc when the package is installed (see ``docs/performance.md``):
every attribute is declared with its type, which the compiled classes store as plain C fields.
The module is ordinary Python and runs unchanged without compilation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sim.zones.status import LocationZone, ServerZone

#: Latency histogram buckets (ms, upper bounds) for client response times; log-spaced.
LAT_BOUNDS: tuple[float, ...] = tuple(round(0.05 * 1.08**i, 6) for i in range(240))  # 0.05 ms .. ~5e6 ms
_N_BOUNDS = len(LAT_BOUNDS)
_LOG_BASE = math.log(1.08)


class Worker:
    """A worker process: the connections and requests it handles (``/workers/``, API 9)."""

    __slots__ = ("id", "pid", "accepted", "dropped", "active", "idle", "requests_total", "requests_current")

    def __init__(self, wid: int, pid: int) -> None:
        self.id = wid
        self.pid = pid
        self.accepted = 0
        self.dropped = 0
        self.active = 0
        self.idle = 0
        self.requests_total = 0
        self.requests_current = 0

    def reset_statistics(self) -> None:
        self.accepted = self.dropped = 0
        self.requests_total = 0


class ClientConn:
    """A client connection; with keepalive it carries several requests."""

    __slots__ = ("worker", "requests", "idle_since", "open", "ssl")

    def __init__(self, worker: Worker, ssl: bool) -> None:
        self.worker = worker
        self.requests = 0
        self.idle_since: float | None = None
        self.open = True
        self.ssl = ssl


class Request:
    """One client request inside a node.

    The fields every request sets or reads are set in ``__init__``; the retry, revalidation and
    queue fields keep their class-level defaults until a request needs them (a cache hit never
    does).
    """

    tried: Any = None  # the peers tried so far (a set) once a request retries
    tries_left: int = 0
    first_try_at: float = 0.0
    cache_key: Any = None  # the cache Lookup of a request that went through a cache
    cache_entry: Any = None
    bypass: bool = False
    waiting: bool = False
    attempt: Any = None  # the current sim.http.proxy.Attempt
    vars: dict[str, str] | None = None
    api_handler: Any = None  # who answers this request if it reaches an api location
    # error_page: internal redirects made so far, the status to send in the end (0: the
    # response's own), and whether a further error may be redirected again
    redirects: int = 0
    err_status: int = 0
    error_page_done: bool = False

    def __init__(self, node: Any, uri: str, host: str, client_ip: str, req_bytes: int,
                 done: Callable[[Request], Any] | None = None, method: str = "GET",
                 conn: ClientConn | None = None, worker: Worker | None = None, incarnation: int = 0,
                 t0: float = 0.0) -> None:
        self.node = node
        self.uri = uri
        self.host = host
        self.client_ip = client_ip
        self.req_bytes = req_bytes
        self.done = done  # callable(request) when the response has been delivered
        self.method = method
        self.conn = conn
        self.worker = worker
        self.incarnation = incarnation
        self.t0 = t0
        self.server: int | None = None
        self.sz: ServerZone | None = None
        self.lz: LocationZone | None = None
        self.loc: Any = None
        self.upstream: Any = None
        self.limit_conns: list | None = None
        self.cache_status: str | None = None
        self.final = False
        self.status = 0
        self.resp_bytes = 0


class LatencyHistogram:
    """Client response times in log-spaced buckets; percentiles without per-request lists."""

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (_N_BOUNDS + 1)
        self.n = 0
        self.total = 0.0

    def add(self, ms: float) -> None:
        if ms <= 0.05:
            i = 0
        else:
            i = int(math.log(ms / 0.05) / _LOG_BASE) + 1
            if i > _N_BOUNDS:
                i = _N_BOUNDS
        self.counts[i] += 1
        self.n += 1
        self.total += ms

    def merge(self, other: LatencyHistogram) -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.n += other.n
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (bucket error <= 8%)."""
        if self.n == 0:
            return None
        target = q * self.n
        acc = 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= target and c:
                return LAT_BOUNDS[min(i, _N_BOUNDS - 1)]
        return LAT_BOUNDS[-1]

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

