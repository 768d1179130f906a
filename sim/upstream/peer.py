"""One server of an upstream group: its configuration, its state and its statistics.

A :class:`Peer` counts its own traffic with the API's field names and knows its state:
``down`` and ``draining`` come from its configuration, ``checking`` and ``unhealthy`` from
active health checks (:mod:`sim.upstream.health`), and ``unavail`` from passive failure detection as
nginx's round-robin module does it: a failed attempt increments the in-window failure count and
stamps ``checked``; once ``max_fails`` is reached the peer is skipped until ``fail_timeout`` has
passed since the last stamp, then tried again by one request (a probe that stamps ``checked``
anew, so the others keep skipping the peer until it answers); the first success after a fresh
selection clears the count, and ``unavail``, ``downtime`` and ``downstart`` follow the state.
The group that owns the peer, its balancer and its selection live in :mod:`sim.upstream.upstream`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Protocol

from sim.conf.config import ServerConf
from sim.core.clock import format_seconds

#: Upper bounds (ms) of the response-time histogram buckets; the last bucket is "inf".
HIST_BOUNDS = (5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, math.inf)

_EMA_NEW = 0.05

#: What tells an API view whether a peer may have changed since it was last rendered: the
#: peer's change counter (:attr:`Peer.changes`), which every change of what the API shows of an
#: http peer bumps, here and where the proxy moves ``requests``, ``active`` and ``sent``
#: (``sim.http.proxy``). One integer, so a poll compares 32 peers in a few hundred nanoseconds.
CHANGE_KEY = ("changes",)


class Group(Protocol):
    """What a peer reads (and bumps) on the group it belongs to, an
    :class:`sim.upstream.upstream.Upstream`."""

    env: Any
    #: the group's change counter, bumped on every change an API view can show
    epoch: int
    #: one primary peer and no backups: nginx never marks such a peer unavailable
    single: bool


class Peer:
    """One server of an upstream: configuration, state and statistics."""

    def __init__(self, upstream: Group, pid: int, conf: ServerConf, server: str, now: float):
        self.upstream = upstream
        self.id = pid
        self.name = conf.address  # as written in the server directive
        self.server = server  # the resolved address
        self.host = conf.host
        self.port = conf.port
        self.address = conf.address
        self.service = conf.service
        self.backup = conf.backup
        self.weight = conf.weight
        self.max_conns = conf.max_conns
        self.max_fails = conf.max_fails
        self.fail_timeout_ms = conf.fail_timeout_ms
        self.slow_start_ms = conf.slow_start_ms
        self.route = conf.route
        self.down = conf.down
        self.drain = conf.drain
        self.parent: int | None = None
        self.resolved_host: str | None = None
        self.removed = False
        #: bumped with every change of what the API shows of the peer (statistics, state,
        #: configuration), including what the proxy moves (see :data:`CHANGE_KEY`)
        self.changes = 0
        # balancer state
        self.effective_weight = conf.weight
        self.current_weight = 0
        # passive failure state (nginx's peer->fails, checked, accessed)
        self._fails = 0
        self.checked = now
        self.accessed = now
        self._unavail_until: float | None = None
        self._probing = False  # the unavail period is a probe's, not yet counted in ``unavail``
        self._ramp_start: float | None = None
        # active health checks: None (no opinion), "checking" or "unhealthy"
        self.hc_state: str | None = None
        self.hc_checks = 0
        self.hc_fails = 0
        self.hc_unhealthy = 0
        self.hc_last_passed: bool | None = None
        # statistics (API names)
        self.active = 0
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0]  # 1xx..5xx
        self.codes: dict[int, int] = {}
        self.sent = 0
        self.received = 0
        self.fails = 0
        self.unavail = 0
        self._downtime = 0.0
        self._down_since: float | None = None
        self.selected: float | None = None  # sim ms
        self.header_time: float | None = None
        self.response_time: float | None = None
        # TLS to upstreams (proxy_pass https://) is not modelled: no peer has ssl counters
        self.ssl: Any = None
        # stream peers
        self.connections = 0
        self.connect_time: float | None = None
        self.first_byte_time: float | None = None
        # response time histogram (API 9, PLS.37), bucket upper bounds in ms
        self.hist = [0] * len(HIST_BOUNDS)
        self.hist_sum = 0.0

    # --- state --------------------------------------------------------------------------------

    def _sync(self, now: float) -> None:
        """Close an ``unavail`` period whose fail_timeout has run out (lazily, when asked)."""
        until = self._unavail_until
        if until is not None and now > until:
            self.upstream.epoch += 1
            self.changes += 1
            self._unavail_until = None
            self._probing = False
            if self.hc_state is None and self._down_since is not None:
                self._downtime += until - self._down_since
                self._down_since = None
            if self.slow_start_ms and not self.upstream.single:
                self._begin_ramp(until)

    def is_unavail(self, now: float) -> bool:
        return (
            self.max_fails > 0
            and self._fails >= self.max_fails
            and now - self.checked <= self.fail_timeout_ms
            and not self.upstream.single
        )

    def state_at(self, now: float) -> str:
        self._sync(now)
        if self.down:
            return "down"
        if self.drain:
            return "draining"
        if self.hc_state is not None:
            return self.hc_state
        if self.is_unavail(now):
            return "unavail"
        return "up"

    @property
    def state(self) -> str:
        return self.state_at(self.upstream.env.now)

    def downtime_at(self, now: float) -> float:
        self._sync(now)
        extra = now - self._down_since if self._down_since is not None else 0.0
        return self._downtime + extra

    def downstart_at(self, now: float) -> float | None:
        """Sim time the current unavail/checking/unhealthy period began (None when not down)."""
        self._sync(now)
        return self._down_since

    def _begin_ramp(self, at: float) -> None:
        # the balancer raises effective_weight by one per selection up to lb_weight, so start low
        self._ramp_start = at
        self.effective_weight = 1

    @property
    def lb_weight(self) -> int:
        """The weight balancing uses now: ramps linearly from 1 to ``weight`` during slow_start."""
        if self._unavail_until is None and self._ramp_start is None:
            return self.weight  # no ramp and none about to start: the balancer's common case
        now = self.upstream.env.now
        if self._unavail_until is not None:
            # the ramp starts when fail_timeout runs out, whether or not anything looked since
            self._sync(now)
        start = self._ramp_start
        if start is None:
            return self.weight
        elapsed = now - start
        if elapsed >= self.slow_start_ms or elapsed < 0:
            if elapsed >= self.slow_start_ms:
                self._ramp_start = None
            return self.weight
        return max(1, math.ceil(self.weight * elapsed / self.slow_start_ms))

    def set_hc_state(self, state: str | None, now: float) -> None:
        """Health checks move the peer in or out of ``checking``/``unhealthy``."""
        self._sync(now)
        self.upstream.epoch += 1
        self.changes += 1
        was_down = self._down_since is not None
        if state == "unhealthy" and self.hc_state != "unhealthy":
            self.hc_unhealthy += 1
        prev = self.hc_state
        self.hc_state = state
        if state is not None and not was_down:
            self._down_since = now
        elif state is None and was_down and not self.is_unavail(now):
            since = self._down_since
            if since is not None:  # (was_down says it is)
                self._downtime += now - since
            self._down_since = None
            if prev == "unhealthy" and self.slow_start_ms and not self.upstream.single:
                self._begin_ramp(now)

    # --- traffic ------------------------------------------------------------------------------

    def note_selected(self, now: float) -> None:
        self.upstream.epoch += 1
        self.changes += 1
        self.selected = now
        if now - self.checked > self.fail_timeout_ms:
            self.checked = now
            if self.max_fails and self._fails >= self.max_fails and not self.upstream.single:
                # a probe after fail_timeout: with the count still at max_fails and ``checked``
                # fresh, nginx skips the peer for every other request until this one answers,
                # so the peer is unavailable again (and down) from now; not counted in ``unavail``
                self._unavail_until = now + self.fail_timeout_ms
                self._probing = True
                if self._down_since is None:
                    self._down_since = now

    def note_failure(self, now: float) -> None:
        """A failed attempt (error, timeout, or a status listed in proxy_next_upstream)."""
        self._sync(now)
        # ``unavail`` counts how many times the peer became unavailable: requests that were
        # already running when it did and fail afterwards extend the period but are no new one
        was_unavail = self._unavail_until is not None and not self._probing
        self.upstream.epoch += 1
        self.changes += 1
        self._probing = False
        self.fails += 1
        self._fails += 1
        self.checked = now
        self.accessed = now
        if self.max_fails:
            self.effective_weight -= self.weight // self.max_fails
            if self.effective_weight < 0:
                self.effective_weight = 0
            if self._fails >= self.max_fails and not self.upstream.single:
                if not was_unavail:
                    self.unavail += 1
                self._unavail_until = now + self.fail_timeout_ms
                self._ramp_start = None
                if self._down_since is None:
                    self._down_since = now

    def note_success(self, now: float) -> None:
        """A successful attempt. nginx stamps ``accessed`` only on failures and ``checked`` when
        it selects a peer after the fail_timeout window, so a success that follows such a fresh
        selection (checked newer than the last failure) clears the in-window failure count."""
        if self.accessed < self.checked:
            self.clear_fails(now)

    def clear_fails(self, now: float) -> None:
        """Forget the failure count; a probe's unavailable period (if one is open) ends now."""
        self.upstream.epoch += 1
        self.changes += 1
        self._fails = 0
        if self._unavail_until is not None:
            self._unavail_until = None
            self._probing = False
            if self.hc_state is None and self._down_since is not None:
                self._downtime += now - self._down_since
                self._down_since = None

    def count_response(self, status: int, nbytes: int, header_ms: float, total_ms: float) -> None:
        self.upstream.epoch += 1
        self.changes += 1
        self.responses[status // 100 - 1] += 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.received += nbytes
        ht = self.header_time
        self.header_time = header_ms if ht is None else ht + _EMA_NEW * (header_ms - ht)
        rt = self.response_time
        self.response_time = total_ms if rt is None else rt + _EMA_NEW * (total_ms - rt)
        # the first bucket whose upper bound is >= total_ms (the last bound is inf)
        self.hist[bisect_left(HIST_BOUNDS, total_ms)] += 1
        self.hist_sum += total_ms

    def reset_statistics(self) -> None:
        """DELETE /http/upstreams/{u}/: counters back to zero; state and gauges untouched."""
        self.upstream.epoch += 1
        self.changes += 1
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0]
        self.codes = {}
        self.sent = self.received = 0
        self.fails = self.unavail = 0
        self.hc_checks = self.hc_fails = self.hc_unhealthy = 0
        self.connections = 0
        self._downtime = 0.0
        if self._down_since is not None:
            self._down_since = self.upstream.env.now
        self.hist = [0] * len(HIST_BOUNDS)
        self.hist_sum = 0.0

    @property
    def responses_total(self) -> int:
        return sum(self.responses)

    # --- configuration as the API shows it ------------------------------------------------------

    def conf_dict(self, kind: str) -> dict:
        d: dict = {
            "id": self.id,
            "server": self.name if self.parent is None else self.server,
        }
        if self.service is not None:
            d["service"] = self.service
        d.update(
            weight=self.weight,
            max_conns=self.max_conns,
            max_fails=self.max_fails,
            fail_timeout=format_seconds(self.fail_timeout_ms),
            slow_start=format_seconds(self.slow_start_ms),
        )
        if kind == "http":
            d["route"] = self.route
        d["backup"] = self.backup
        d["down"] = self.down
        if kind == "http" and self.drain:
            d["drain"] = True
        if self.parent is not None:
            d["parent"] = self.parent
            d["host"] = self.resolved_host
        return d
