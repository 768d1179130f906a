"""Proxying a request to an upstream (``proxy_pass``), with nginx's retry rules.

One :class:`Request` travels: node entry (:mod:`sim.node.node`), optionally the cache, then one or
more :class:`Attempt` objects, each a connection to one peer. An attempt connects over the
node->backend link (a cut link or lossy one can time out after ``proxy_connect_timeout``; a
down backend refuses after one round trip), then waits for a backend slot, is served, and
delivers its response. An attempt that fails with an error, a timeout, or a status listed in
``proxy_next_upstream`` is retried on another peer while tries and
``proxy_next_upstream_timeout`` allow, as nginx does; the client gets the last result (502 for
an error, 504 for a timeout). Passive failure accounting follows nginx: errors, timeouts and the
listed 5xx statuses (never 403/404) count toward ``max_fails``.

Only two simpy events are spent on a plain request (the arrival and the delivery); timers are
created only when a request waits in a queue.
"""

from __future__ import annotations

from typing import Any

from simpy.events import Timeout

from sim.core.eventq import FastQueue
from sim.http.traffic import Request

#: proxy_next_upstream keywords that name statuses
#: What ``tried`` holds until a request's first retry: most never retry, and need no set.
_NONE_TRIED: frozenset = frozenset()

_STATUS_KEYS = {500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504", 403: "http_403", 404: "http_404", 429: "http_429"}


class Attempt:
    """One connection from a node to one peer, used as the backend's job."""

    __slots__ = (
        "req",
        "peer",
        "upstream",
        "link",
        "t_start",
        "pre_ms",
        "abandoned",
        "started",
        "timed_out",
        "status",
        "size",
        "header_ms",
        "total_ms",
        "read_deadline",
        "proxy",
        "keepalive",
        "conditional_version",
    )

    def __init__(self, proxy: Proxy, req: Request, peer, upstream, link, pre_ms: float, keepalive: bool) -> None:
        self.proxy = proxy
        self.req = req
        self.peer = peer
        self.upstream = upstream
        self.link = link
        self.t_start = proxy.fq.now
        self.pre_ms = pre_ms  # connect + request transfer
        self.abandoned = False
        self.started = False
        self.timed_out = False
        self.status = 0
        self.size = 0
        self.header_ms = 0.0
        self.total_ms = 0.0
        self.read_deadline = self.t_start + pre_ms + req.loc.proxy.read_timeout_ms
        self.keepalive = keepalive
        self.conditional_version: Any = None  # the cached entry's version, for a conditional request

    # --- the backend's job protocol ----------------------------------------------------------

    def queued(self, backend) -> None:
        """The backend is busy: arm the read timeout, since the wait may exceed it."""
        ev = Timeout(self.proxy.env, self.read_deadline - self.proxy.fq.now, self)
        ev.callbacks.append(self.proxy._read_timeout)

    def start(self, backend, service_ms: float) -> float:
        """A slot is ours: decide the response; return how long the slot stays held."""
        self.started = True
        env_now = self.proxy.fq.now
        req = self.req
        wait = env_now - self.t_start  # time already spent (connect, queueing)
        pre = self.pre_ms if wait < self.pre_ms else 0.0
        if self.conditional_version is not None and self.conditional_version == backend.content_version(req.uri, env_now):
            status = 304
            size = backend.spec.header_bytes
        else:
            status = backend.draw_status()
            size = backend.size_for(req.uri) + backend.spec.header_bytes
        self.status = status
        self.size = size
        back = self.link.transfer_ms(size)
        self.header_ms = wait + pre + service_ms + self.link.one_way_ms
        self.total_ms = wait + pre + service_ms + back
        hold = pre + service_ms + back
        if self.t_start + self.header_ms > self.read_deadline + 1e-9 and not self.timed_out:
            self.timed_out = True
            if env_now + hold > self.read_deadline:
                delay = max(self.read_deadline - env_now, 0.0)
                ev = Timeout(self.proxy.env, delay, self)
                ev.callbacks.append(self.proxy._read_timeout)
        return hold

    def finish(self) -> None:
        if self.abandoned or self.timed_out:
            return
        self.proxy._attempt_done(self)


class Proxy:
    """The proxy module of one node."""

    def __init__(self, node):
        self.node = node
        self.env = node.env
        self.fq: FastQueue = node.fq
        self.attempts = 0  # connections tried to peers (every try of every request)
        self.network = node.network
        self.backend_of = node.backend_of

    # --- entry --------------------------------------------------------------------------------

    def start(self, req: Request) -> None:
        """Begin proxying ``req`` to its location's upstream (cache decided by the caller)."""
        up = req.upstream
        req.tried = _NONE_TRIED
        req.tries_left = up.tries_allowed()
        tries = req.loc.proxy.next_upstream_tries
        if tries and tries < req.tries_left:
            req.tries_left = tries
        req.first_try_at = self.fq.now
        self._try(req)

    def _try(self, req: Request) -> None:
        up = req.upstream
        now = self.fq.now
        peer = up.select(req.tried, req.client_ip if up.method == "ip_hash" else self._hash_key(req), now)
        if peer is None:
            if up.queue_max is not None and not req.tried:
                self._enqueue(req)
                return
            self._give_up(req, "error")
            return
        self._connect(req, peer)

    def _hash_key(self, req: Request):
        key = req.upstream.conf.hash_key
        if key is None:
            return None
        return self.node.expand(key, req)

    def _connect(self, req: Request, peer) -> None:
        up = req.upstream
        node = self.node
        self.attempts += 1
        peer.requests += 1
        peer.active += 1
        peer.sent += req.req_bytes
        peer.changes += 1  # ... and the peer's own rendered piece until this changes
        up.epoch += 1  # the API may reuse a rendered upstream until this changes
        backend = self.backend_of(peer.server, peer.name)
        link = self.network.link(node.name, peer.server)
        proxy = req.loc.proxy
        reused = up.take_keepalive(peer)
        # a backend that went down closed its idle connections (nginx's keepalive cache drops a
        # cached connection the peer closed), so only a fresh connect is left, and it is refused
        if reused and not link.cut and backend is not None and backend.accepting:
            pre = link.transfer_ms(req.req_bytes)
        else:
            c = link.connect_ms(proxy.connect_timeout_ms)
            if c is None or backend is None:
                self._fail_later(req, peer, proxy.connect_timeout_ms, "timeout")
                return
            if not backend.accepting:
                backend.refused += 1
                self._fail_later(req, peer, 2.0 * link.one_way_ms, "error")
                return
            pre = c + link.transfer_ms(req.req_bytes)
        att = Attempt(self, req, peer, up, link, pre, reused)
        req.attempt = att
        if req.cache_entry is not None and req.loc.proxy.cache_revalidate and req.cache_status == "EXPIRED":
            att.conditional_version = req.cache_entry.version
        backend.submit(att)

    def _fail_later(self, req, peer, delay, kind) -> None:
        ev = Timeout(self.env, delay, (req, peer, kind))
        ev.callbacks.append(self._failed_cb)

    def _failed_cb(self, ev) -> None:
        req, peer, kind = ev._value
        self._attempt_failed(req, peer, kind, None)

    def _read_timeout(self, ev) -> None:
        att: Attempt = ev._value
        if att.abandoned:
            return
        if att.started and not att.timed_out:
            return
        # an attempt that waited at a busy backend can hold two timers for the same deadline
        # (one armed while queued, one when its late response became known); the first ends
        # the attempt and the other must find it over, or the peer counts two failures
        att.abandoned = True
        self._attempt_failed(att.req, att.peer, "timeout", att)

    # --- completion ---------------------------------------------------------------------------

    def _release(self, peer, up) -> None:
        peer.active -= 1
        peer.changes += 1
        up.epoch += 1
        if up.queue and up.queue_max is not None:
            self._drain_queue(up)

    def _attempt_done(self, att: Attempt) -> None:
        req, peer, up = att.req, att.peer, att.upstream
        now = self.fq.now
        status = att.status
        peer.count_response(status, att.size, att.header_ms, att.total_ms)
        self._release(peer, up)
        up.give_keepalive(peer)
        nu = req.loc.proxy.next_upstream
        key = _STATUS_KEYS.get(status)
        if key is not None and key in nu:
            if status not in (403, 404):
                peer.note_failure(now)
            if self._may_retry(req):
                self._mark_tried(req, peer)
                self._try(req)
                return
        else:
            peer.note_success(now)
        req.attempt = att
        self.node.upstream_response(req, status, att.size)

    def _attempt_failed(self, req, peer, kind: str, att) -> None:
        now = self.fq.now
        peer.note_failure(now)
        self._release(peer, req.upstream)
        if kind in req.loc.proxy.next_upstream and self._may_retry(req):
            self._mark_tried(req, peer)
            self._try(req)
            return
        self._give_up(req, kind)

    @staticmethod
    def _mark_tried(req, peer) -> None:
        if req.tried is _NONE_TRIED:
            req.tried = set()
        req.tried.add(peer)

    def _may_retry(self, req) -> bool:
        req.tries_left -= 1
        if req.tries_left <= 0:
            return False
        limit = req.loc.proxy.next_upstream_timeout_ms
        if limit and self.fq.now - req.first_try_at >= limit:
            return False
        return True

    def _give_up(self, req, kind: str) -> None:
        status = 504 if kind == "timeout" else 502
        self.node.upstream_failed(req, status, kind)

    # --- queue --------------------------------------------------------------------------------

    def _enqueue(self, req) -> None:
        up = req.upstream
        up.epoch += 1
        if up.queue_len >= up.queue_max:
            up.overflows += 1
            self._give_up(req, "error")
            return
        req.waiting = True
        up.queue.append(req)
        up.queue_len += 1
        ev = Timeout(self.env, up.queue_timeout_ms, req)
        ev.callbacks.append(self._queue_timeout)

    def _queue_timeout(self, ev) -> None:
        req = ev._value
        if req.waiting:
            req.waiting = False
            req.upstream.queue_len -= 1
            req.upstream.epoch += 1
            self._give_up(req, "error")

    def _drain_queue(self, up) -> None:
        q = up.queue
        now = self.fq.now
        while q:
            req = q[0]
            if not req.waiting:
                q.popleft()
                continue
            peer = up.select(req.tried, req.client_ip if up.method == "ip_hash" else self._hash_key(req), now)
            if peer is None:
                return
            q.popleft()
            req.waiting = False
            up.queue_len -= 1
            self._connect(req, peer)
