"""The real servers behind upstreams, shared by every node of the cluster.

A backend is addressed as the ``server`` directive addresses it (``"10.0.0.1:80"``). It serves
at most ``concurrency`` requests at a time and queues the rest in FIFO order; each request
holds a slot from the moment nginx's connection reaches it until its response has been
delivered (the connection is the unit of concurrency). Service time, status and response size
come from the backend's distributions; the same URL always has the same size, so caches see
consistent objects. Faults change a backend's state at run time: ``down`` refuses connections,
``slow`` multiplies service times, ``erroring`` answers a share of requests (and its health
endpoint) with an error status.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sim.core import dists
from sim.core.eventq import later
from sim.core.rng import Draws

STATES = ("up", "down", "slow", "erroring")


@dataclass(frozen=True)
class BackendSpec:
    """A backend as the scenario describes it (defaults serve any address not listed)."""

    address: str
    concurrency: int = 64
    service_time: dists.DistSpec = dists.DistSpec("exponential", (20.0,))
    response_size: dists.DistSpec = dists.DistSpec("constant", (4096.0,))
    status_mix: tuple[tuple[int, float], ...] = ((200, 1.0),)
    header_bytes: int = 200  # response header size added to every response
    health_status: int = 200
    health_body: str = "OK"
    health_headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain"),)
    health_time: dists.DistSpec = dists.DistSpec("constant", (1.0,))
    cache_max_age_ms: int | None = None  # Cache-Control: max-age sent with responses
    content_change_ms: int | None = None  # how often each URL's content changes (for 304s)
    error_status: int = 500
    stream_response_bytes: dists.DistSpec = dists.DistSpec("constant", (1024.0,))
    hosts: tuple[str, ...] = field(default=())  # extra names for the address (documentation only)


class Backend:
    """A backend's run-time state: slots, queue, fault state and counters."""

    def __init__(self, env, spec: BackendSpec, streams):
        self.env = env
        self.spec = spec
        self.address = spec.address
        self.concurrency = spec.concurrency
        self.busy = 0
        self.queue: deque = deque()
        self._queued_at: deque = deque()  # when each queued job arrived, in the queue's order
        self.state = "up"
        self.slow_factor = 1.0
        self.error_rate = 1.0
        # counters
        self.requests = 0  # requests that reached the backend (started service)
        self.health_requests = 0
        self.refused = 0
        self.max_queue = 0
        # queueing counters: total time served jobs waited for a slot, and the integral of
        # busy slots over time (slot-ms); with ``busy_slot_ms()`` they give Wq and utilisation
        self.queue_wait_ms = 0.0
        self._busy_area = 0.0
        self._busy_since = 0.0
        prefix = f"backend/{spec.address}"
        self._service: Draws = spec.service_time.draws(streams.get(prefix + "/service"))
        self._size: Draws = spec.response_size.draws(streams.get(prefix + "/size"))
        self._health_time = spec.health_time.sampler(streams.get(prefix + "/health"))
        self._stream_bytes = spec.stream_response_bytes.sampler(streams.get(prefix + "/stream"))
        codes = [c for c, _ in spec.status_mix]
        weights = [w for _, w in spec.status_mix]
        self._status = (
            dists.DistSpec("empirical", (tuple(codes), tuple(weights))).sampler(streams.get(prefix + "/status"))
            if len(codes) > 1
            else (lambda c=float(codes[0]): c)
        )
        self._u = dists.DistSpec("uniform", (0.0, 1.0)).sampler(streams.get(prefix + "/faults"))
        self._sizes: dict[str, int] = {}

    # --- faults -----------------------------------------------------------------------------

    def set_state(self, state: str, *, factor: float = 1.0, error_rate: float = 1.0) -> None:
        if state not in STATES:
            raise ValueError(f"backend state must be one of {', '.join(STATES)}")
        self.state = state
        self.slow_factor = factor if state == "slow" else 1.0
        self.error_rate = error_rate if state == "erroring" else 1.0

    @property
    def accepting(self) -> bool:
        return self.state != "down"

    # --- requests ---------------------------------------------------------------------------

    def size_for(self, uri: str) -> int:
        """Body size of ``uri``: drawn once, then the same for every request (and every node)."""
        size = self._sizes.get(uri)
        if size is None:
            size = int(self._size.next())
            if len(self._sizes) < 1_000_000:
                self._sizes[uri] = size
        return size

    def draw_status(self) -> int:
        if self.state == "erroring" and self._u() < self.error_rate:
            return self.spec.error_status
        return int(self._status())

    def content_version(self, uri: str, now: float) -> int:
        """Which version of ``uri`` the backend has now (a cached copy of an older one gets 200)."""
        interval = self.spec.content_change_ms
        return 0 if not interval else int(now // interval)

    def submit(self, job) -> None:
        """Take a job (an upstream attempt); ``job.start(backend, service_ms)`` runs when a slot frees.

        ``job.start`` returns how long after now the slot stays held (service, plus delivery of
        the response), and the backend schedules the slot's release, then calls ``job.finish()``.
        """
        if self.busy < self.concurrency:
            now = self.env.fast.now
            self._busy_area += self.busy * (now - self._busy_since)
            self._busy_since = now
            self.busy += 1
            self._start(job)
        else:
            self.queue.append(job)
            self._queued_at.append(self.env.fast.now)
            if len(self.queue) > self.max_queue:
                self.max_queue = len(self.queue)
            job.queued(self)

    def _start(self, job) -> None:
        self.requests += 1
        hold = job.start(self, self._service.next() * self.slow_factor)
        later(self.env, hold, self._release, job)

    def _release(self, ev) -> None:
        job = ev._value
        queue = self.queue
        queued_at = self._queued_at
        while queue:
            nxt = queue.popleft()
            since = queued_at.popleft()
            if nxt.abandoned:  # nginx gave up while it waited: never served
                continue
            self.queue_wait_ms += self.env.fast.now - since
            self._start(nxt)
            break
        else:
            now = self.env.fast.now
            self._busy_area += self.busy * (now - self._busy_since)
            self._busy_since = now
            self.busy -= 1
        job.finish()

    def busy_slot_ms(self) -> float:
        """Slot-milliseconds spent serving so far: the integral of busy slots over time."""
        return self._busy_area + self.busy * (self.env.fast.now - self._busy_since)

    def health_probe(self) -> tuple[int, dict[str, str], str, float] | None:
        """Answer a health-check request: (status, headers, body, time) or None when refused."""
        if self.state == "down":
            self.refused += 1
            return None
        self.health_requests += 1
        t = self._health_time() * self.slow_factor
        if self.state == "erroring" and self._u() < self.error_rate:
            return self.spec.error_status, dict(self.spec.health_headers), "error", t
        return self.spec.health_status, dict(self.spec.health_headers), self.spec.health_body, t

    def stream_bytes(self) -> int:
        return int(self._stream_bytes())
