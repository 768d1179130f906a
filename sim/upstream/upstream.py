"""Upstream groups and their peers (``upstream`` / ``server``), http and stream.

A :class:`Peer` counts its own traffic with the API's field names and knows its state:
``down`` and ``draining`` come from its configuration, ``checking`` and ``unhealthy`` from
active health checks (:mod:`sim.upstream.health`), and ``unavail`` from passive failure detection as
nginx's round-robin module does it: a failed attempt increments the in-window failure count and
stamps ``checked``; once ``max_fails`` is reached the peer is skipped until ``fail_timeout`` has
passed since the last stamp, then tried again by one request (a probe that stamps ``checked``
anew, so the others keep skipping the peer until it answers); the first success after a fresh
selection clears the count, and ``unavail``, ``downtime`` and ``downstart`` follow the state.
An :class:`Upstream` owns its peers (primary and backup lists), its balancer, its
``queue`` and the run-time add/patch/remove operations with nginx's validation rules.

A ``server NAME resolve`` (or a server added through the API by name) is a *parent* entry: it is
listed among the configured servers but takes no traffic; every address the name resolves to is
a peer with ``parent`` and ``host`` set. The upstream resolves its parents through the node's
:class:`sim.zones.resolver.Resolver` when the node hands it one (:meth:`Upstream.start_resolving`),
and again whenever an answer's validity runs out, on one timer per upstream: new addresses
become peers, vanished ones are removed (zombies while busy), as nginx's zone module does.
"""

from __future__ import annotations

import ipaddress
import math
import re
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any

from sim.conf.config import ServerConf, UpstreamConf
from sim.core import errors
from sim.core.clock import UnitError, format_seconds, parse_duration
from sim.upstream.balancer import make_balancer

DOWNISH = ("unavail", "checking", "unhealthy")

#: Largest values accepted for integer server parameters through the API (nginx stores them
#: in ngx_uint_t fields but rejects absurd values; see docs/decisions.md).
MAX_WEIGHT = 1_000_000
MAX_INT = 2**31 - 1
MAX_TIME_MS = 2**31 - 1

_EMA_NEW = 0.05

#: Server parameters a PATCH may change, as (API field, Peer attribute); a resolved server's
#: children follow what is patched on their parent.
_PATCHABLE = (
    ("max_conns", "max_conns"),
    ("max_fails", "max_fails"),
    ("fail_timeout", "fail_timeout_ms"),
    ("slow_start", "slow_start_ms"),
    ("route", "route"),
    ("down", "down"),
    ("drain", "drain"),
)
#: What a resolved peer takes over from its parent when it is created.
_INHERITED = ("weight", "max_conns", "max_fails", "fail_timeout_ms", "slow_start_ms", "route", "down", "drain")
#: Answers that say what the name's addresses are (none, for NXDOMAIN); other errors keep the peers.
_DEFINITE = ("noerror", "nxdomain")
#: Shortest wait before a name is asked again (keeps a zero ``valid=`` from spinning).
_MIN_RESOLVE_WAIT_MS = 1.0


def _is_name(host: str) -> bool:
    """True for a domain name, False for an IP literal or a unix: path."""
    if host.startswith("unix:"):
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


def _with_port(ip: str, port: int | None) -> str:
    return f"[{ip}]:{port}" if ":" in ip and not ip.startswith("[") else f"{ip}:{port}"


class Peer:
    """One server of an upstream: configuration, state and statistics."""

    def __init__(self, upstream: Upstream, pid: int, conf: ServerConf, server: str, now: float):
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
        self._fails = 0
        if self._unavail_until is not None:
            self._unavail_until = None
            self._probing = False
            if self.hc_state is None and self._down_since is not None:
                self._downtime += now - self._down_since
                self._down_since = None

    def count_response(self, status: int, nbytes: int, header_ms: float, total_ms: float) -> None:
        self.upstream.epoch += 1
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


#: Upper bounds (ms) of the response-time histogram buckets; the last bucket is "inf".
HIST_BOUNDS = (5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, math.inf)


class Upstream:
    """A group of peers with its balancer, queue and run-time configuration API."""

    def __init__(self, env, conf: UpstreamConf, rng, resolve_name=None):
        self.env = env
        self.conf = conf
        self.name = conf.name
        self.kind = conf.kind
        self.zone = conf.zone
        self.method = conf.method
        self.resolve_name = resolve_name  # callable(host) -> list[str] | None (the scenario's DNS)
        #: bumped on every change an API view of the upstream can show (peer counters, states,
        #: configuration, servers added or removed, keepalive, queue); code that changes a peer or
        #: the upstream outside these methods bumps it too. Lets the API reuse a rendered body.
        self.epoch = 0
        self.peers: list[Peer] = []
        self.primary: list[Peer] = []
        self.backups: list[Peer] = []
        self.has_backup_list = any(s.backup for s in conf.servers)
        self._next_id = 0
        self.balancer: Any = make_balancer(
            conf.method,
            rng=rng,
            hash_consistent=conf.hash_consistent,
            least_time_mode=conf.least_time_mode,
            least_time_inflight=conf.least_time_inflight,
            random_two=conf.random_two,
            random_method=conf.random_method,
        )
        self.backup_balancer: Any = make_balancer("round_robin", rng=rng)
        self.single = False
        # what select() passes to the balancer: one bound method for the upstream's life, which
        # reads the attempt's tried set and time from these two fields (no closure per call)
        self._sel_tried: Any = frozenset()  # a set or frozenset of peers
        self._sel_now = 0.0
        self._eligible_cb = self._eligible
        # queue (http only)
        self.queue_max = conf.queue_size
        self.queue_timeout_ms = conf.queue_timeout_ms
        self.queue: deque = deque()
        self.queue_len = 0
        self.overflows = 0
        # keepalive connection cache
        self.keepalive_max = conf.keepalive or 0
        self.keepalive_idle: dict[int, int] = {}
        self.keepalive = 0
        self.zombie_peers: list[Peer] = []
        # set by the node: reserves a new server's memory in the zone, False when it is full
        self.reserve_memory: Callable[[str, str], bool] | None = None
        # resolved servers: the parent entries (no traffic), their directives, when each is due
        # to be asked again; the node's resolver and hooks come with start_resolving
        self.parents: list[Peer] = []
        self._resolve_confs: dict[int, ServerConf] = {}
        self._resolve_due: dict[int, float] = {}
        self.resolver: Any = None  # the node's Resolver, once it starts resolving
        self.address_of: Callable[[str], str] | None = None
        #: set by the node: health checks take on a peer that resolution added
        self.on_peer_added: Callable[[Peer], None] | None = None
        #: the health checks' shared verdicts on this upstream's peers (sim.upstream.health.HealthRegistry)
        self.health_registry: Any = None
        #: an observer called with the outcome of every select() (a peer, or None), for traces
        #: and tests (compiled methods cannot be wrapped)
        self.on_select: Callable[[Peer | None], Any] | None = None
        self._resolving = False
        self._timer_at: float | None = None
        self._timer_token = 0
        for s in conf.servers:
            self._add_conf(s, env.now)
        self._rebuild()

    # --- building -----------------------------------------------------------------------------

    def _addresses_for(self, conf: ServerConf) -> list[str]:
        if conf.host.startswith("unix:") or conf.port is None:
            return [conf.address]
        try:
            ipaddress.ip_address(conf.host.strip("[]"))
            return [conf.address]
        except ValueError:
            pass
        if self.resolve_name is not None:
            ips = self.resolve_name(conf.host)
            if ips:
                return [f"{ip}:{conf.port}" for ip in ips]
        return [conf.address]

    def _add_conf(self, conf: ServerConf, now: float) -> Peer:
        if conf.resolve and _is_name(conf.host):
            parent = Peer(self, self._next_id, conf, conf.address, now)
            self._next_id += 1
            self.parents.append(parent)
            self._resolve_confs[parent.id] = conf
            # due at once: the first resolution happens when the node starts resolving
            self._resolve_due[parent.id] = now
            return parent
        added: list[Peer] = []
        for addr in self._addresses_for(conf):  # (always at least one address)
            peer = Peer(self, self._next_id, conf, addr, now)
            self._next_id += 1
            self.peers.append(peer)
            (self.backups if conf.backup else self.primary).append(peer)
            added.append(peer)
        return added[0]

    def _rebuild(self) -> None:
        self.epoch += 1
        self.single = len(self.primary) == 1 and not self.backups
        # read by every proxied request: counted here, where every change of the server lists
        # or of a server's ``down`` flag ends up (add, patch, remove)
        self._tries = sum(1 for p in self.primary if not p.down) + len(self.backups)
        self.balancer.rebuild(self.primary)
        self.backup_balancer.rebuild(self.backups)

    def peer(self, pid: int) -> Peer:
        for p in self.peers:
            if p.id == pid:
                return p
        for p in self.parents:
            if p.id == pid:
                return p
        raise errors.UpstreamServerNotFound(f'server with ID "{pid}" does not exist')

    def conf_peers(self) -> list[Peer]:
        """Every configured server as ``.../servers/`` lists it: peers and resolve parents, by id."""
        if not self.parents:
            return list(self.peers)
        return sorted([*self.peers, *self.parents], key=lambda p: p.id)

    def children_of(self, parent: Peer) -> list[Peer]:
        return [p for p in self.peers if p.parent == parent.id]

    def _drop_peer(self, peer: Peer) -> None:
        """Take a peer out of the group; requests still running on it make it a zombie."""
        peer.removed = True
        self.peers.remove(peer)
        (self.backups if peer.backup else self.primary).remove(peer)
        if peer.active > 0:
            self.zombie_peers.append(peer)
        n = self.keepalive_idle.pop(peer.id, 0)
        self.keepalive -= n

    # --- resolved servers ---------------------------------------------------------------------

    def start_resolving(self, resolver=None, address_of: Callable[[str], str] | None = None) -> None:
        """Resolve every parent now and keep resolving each when its answer expires.

        ``resolver`` is the node's :class:`sim.zones.resolver.Resolver` (queries counted in its
        zone); without one the scenario's DNS (``resolve_name``) answers once, uncounted.
        ``address_of`` turns a host-map entry into an address (node names stand for nodes).
        """
        self.resolver = resolver
        self.address_of = address_of
        self._resolving = True
        if not self.parents:
            return
        now = self.env.now
        for parent in list(self.parents):
            self._resolve_parent(parent, now)
        self._rebuild()
        self._schedule()

    def stop_resolving(self) -> None:
        """The configuration or the process is gone: pending timers do nothing any more."""
        self._resolving = False
        self._timer_token += 1
        self._timer_at = None

    def _schedule(self) -> None:
        if not self._resolving or self.resolver is None:
            return
        due = min(self._resolve_due.values(), default=math.inf)
        if due == math.inf or (self._timer_at is not None and self._timer_at <= due):
            return
        self._timer_at = due
        self._timer_token += 1
        ev = self.env.timeout(max(0.0, due - self.env.now))
        ev.callbacks.append(lambda _ev, token=self._timer_token: self._on_resolve_timer(token))

    def _on_resolve_timer(self, token: int) -> None:
        if token != self._timer_token or not self._resolving:
            return  # superseded by an earlier timer, or resolving stopped
        self._timer_at = None
        now = self.env.now
        changed = False
        for parent in list(self.parents):
            if self._resolve_due.get(parent.id, math.inf) <= now:
                changed = self._resolve_parent(parent, now) or changed
        if changed:
            self._rebuild()
        self._schedule()

    def _address(self, entry: str, port: int | None) -> str:
        return _with_port(self.address_of(entry) if self.address_of is not None else entry, port)

    def _lookup(self, conf: ServerConf, now: float) -> tuple[list[str] | None, float]:
        """(the addresses ``conf`` names now, or None to keep the current ones; when to ask again)."""
        resolver = self.resolver
        if resolver is None:
            ips = self.resolve_name(conf.host) if self.resolve_name is not None else None
            return [_with_port(ip, conf.port) for ip in ips or ()], math.inf
        if conf.service is None:
            ans = resolver.query(conf.host, now)
            until = max(ans.valid_until_ms, now + _MIN_RESOLVE_WAIT_MS)
            if ans.rcode not in _DEFINITE:
                return None, until
            return [self._address(a, conf.port) for a in ans.addrs], until
        service = conf.service
        qname = f"{service}.{conf.host}" if "." in service else f"_{service}._tcp.{conf.host}"
        ans = resolver.query(qname, now, "SRV")
        until = max(ans.valid_until_ms, now + _MIN_RESOLVE_WAIT_MS)
        if ans.rcode not in _DEFINITE:
            return None, until
        out: list[str] = []
        for record in ans.addrs:
            target, _, port = record.rpartition(":")
            if not target or not port.isdigit():
                continue
            if not _is_name(target):
                out.append(self._address(target.strip("[]"), int(port)))
                continue
            sub = resolver.query(target, now)
            if sub.ok:
                out.extend(self._address(a, int(port)) for a in sub.addrs)
                until = min(until, max(sub.valid_until_ms, now + _MIN_RESOLVE_WAIT_MS))
        return out, until

    def _resolve_parent(self, parent: Peer, now: float) -> bool:
        """Ask for ``parent``'s name and make its peers match the answer; True if they changed."""
        conf = self._resolve_confs[parent.id]
        addrs, due = self._lookup(conf, now)
        self._resolve_due[parent.id] = due
        if addrs is None:
            return False
        wanted = list(dict.fromkeys(addrs))
        changed = False
        children = self.children_of(parent)
        for child in children:
            if child.server not in wanted:
                self._drop_peer(child)
                changed = True
        have = {c.server for c in children}
        for addr in wanted:
            if addr not in have:
                self._add_child(parent, conf, addr, now)
                changed = True
        return changed

    def _add_child(self, parent: Peer, conf: ServerConf, addr: str, now: float) -> Peer:
        child = Peer(self, self._next_id, conf, addr, now)
        self._next_id += 1
        for attr in _INHERITED:
            setattr(child, attr, getattr(parent, attr))
        child.effective_weight = child.weight
        child.parent = parent.id
        child.resolved_host = conf.host
        self.peers.append(child)
        (self.backups if child.backup else self.primary).append(child)
        if self.on_peer_added is not None:
            self.on_peer_added(child)
        return child

    @property
    def zombies(self) -> int:
        self.zombie_peers = [p for p in self.zombie_peers if p.active > 0]
        return len(self.zombie_peers)

    # --- selection ----------------------------------------------------------------------------

    def select(self, tried, key, now: float) -> Peer | None:
        """Choose a peer for one attempt, or None when no peer can take it now."""
        self._sel_tried = tried
        self._sel_now = now
        eligible = self._eligible_cb
        peer = self.balancer.select(self.primary, eligible, key, now)
        if peer is None and self.backups:
            peer = self.backup_balancer.select(self.backups, eligible, key, now)
        if peer is not None:
            peer._sync(now)
            peer.note_selected(now)
        if self.on_select is not None:
            self.on_select(peer)
        return peer

    def _eligible(self, p: Peer) -> bool:
        """Whether ``p`` may take the attempt :meth:`select` is choosing for."""
        now = self._sel_now
        if p._unavail_until is not None:
            # close an unavail period that ran out, so a slow_start ramp is in place before
            # the balancer reads this peer's weights
            p._sync(now)
        if p.down or p.drain or p.hc_state is not None or p in self._sel_tried:
            return False
        if p.max_conns and p.active >= p.max_conns:
            return False
        if p._fails and p.max_fails and p._fails >= p.max_fails and not self.single:
            return now - p.checked > p.fail_timeout_ms
        return True

    def tries_allowed(self) -> int:
        """nginx's per-request try count: the non-down primaries plus the backups."""
        return self._tries

    def take_keepalive(self, peer: Peer) -> bool:
        n = self.keepalive_idle.get(peer.id, 0)
        if n:
            self.epoch += 1
            self.keepalive_idle[peer.id] = n - 1
            self.keepalive -= 1
            return True
        return False

    def give_keepalive(self, peer: Peer) -> None:
        if self.keepalive_max and not peer.removed and self.keepalive < self.keepalive_max:
            self.epoch += 1
            self.keepalive_idle[peer.id] = self.keepalive_idle.get(peer.id, 0) + 1
            self.keepalive += 1

    def reset_statistics(self) -> None:
        self.epoch += 1
        for p in self.peers:
            p.reset_statistics()
        self.overflows = 0

    # --- run-time configuration (the API's servers endpoints) ---------------------------------

    def _fields(self) -> set[str]:
        common = {"server", "service", "weight", "max_conns", "max_fails", "fail_timeout", "slow_start", "backup", "down"}
        if self.kind == "http":
            common |= {"route", "drain"}
        return common

    def _validate(self, body: Any, *, creating: bool) -> dict:
        """Check a server object from the API; returns normalised values, raising nginx's errors."""
        if not isinstance(body, dict):
            raise errors.UpstreamConfFormatError("nested object or list")
        allowed = self._fields() | {"id"}
        out: dict = {}
        for key, value in body.items():
            if key not in allowed:
                raise errors.UpstreamConfFormatError(f'unknown parameter "{key}"')
            if isinstance(value, dict | list):
                raise errors.UpstreamConfFormatError("nested object or list")
        if "id" in body:
            if creating:
                raise errors.UpstreamConfFormatError('unknown parameter "id"')
        for key in ("weight", "max_conns", "max_fails"):
            if key in body:
                v = body[key]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
                limit = MAX_WEIGHT if key == "weight" else MAX_INT
                low = 1 if key == "weight" else 0
                if v < low or v > limit:
                    exc = {
                        "weight": errors.UpstreamBadWeight,
                        "max_conns": errors.UpstreamBadMaxConns,
                        "max_fails": errors.UpstreamBadMaxFails,
                    }[key]
                    raise exc(f'invalid "{key}"')
                out[key] = v
        for key, exc in (("fail_timeout", errors.UpstreamBadFailTimeout), ("slow_start", errors.UpstreamBadSlowStart)):
            if key in body:
                v = body[key]
                if isinstance(v, bool) or not isinstance(v, str | int):
                    raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
                try:
                    ms = parse_duration(v)
                except UnitError:
                    raise exc(f'invalid "{key}"') from None
                if ms > MAX_TIME_MS:
                    raise exc(f'invalid "{key}"')
                out[key] = ms
        for key in ("backup", "down", "drain"):
            if key in body:
                v = body[key]
                if not isinstance(v, bool):
                    raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
                out[key] = v
        if "route" in body:
            v = body["route"]
            if not isinstance(v, str):
                raise errors.UpstreamConfFormatError('invalid "route" value')
            if len(v) > 32:
                raise errors.UpstreamBadRoute("route is too long")
            out["route"] = v
        if "service" in body:
            v = body["service"]
            if not isinstance(v, str):
                raise errors.UpstreamConfFormatError('invalid "service" value')
            if not v:
                raise errors.UpstreamBadService('"service" is empty')
            out["service"] = v
        if "server" in body:
            v = body["server"]
            if not isinstance(v, str):
                raise errors.UpstreamConfFormatError('invalid "server" value')
            out["server"] = v
        return out

    def _parse_address(self, text: str, service: str | None) -> tuple[str, str, int | None, bool]:
        """(address as shown, host, port, is_name) for a server given through the API."""
        if not text or any(c.isspace() for c in text):
            raise errors.UpstreamBadAddress(f'invalid address "{text}"')
        if text.startswith("unix:"):
            if self.kind == "stream" and len(text) <= 5:
                raise errors.UpstreamBadAddress(f'invalid address "{text}"')
            return text, text, None, False
        m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text)
        if m:
            host, port_s = m.group(1), m.group(2)
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise errors.UpstreamBadAddress(f'invalid address "{text}"') from None
            host_txt = f"[{host}]"
        else:
            host, _, port_s = text.partition(":")
            port_s = port_s or None
            host_txt = host
            if not re.fullmatch(r"[A-Za-z0-9._-]+", host) or host.startswith((".", "-")):
                raise errors.UpstreamBadAddress(f'invalid address "{text}"')
        if port_s is not None and (not port_s.isdigit() or not 0 < int(port_s) < 65536):
            raise errors.UpstreamBadAddress(f'invalid port in "{text}"')
        is_name = True
        try:
            ipaddress.ip_address(host)
            is_name = False
        except ValueError:
            pass
        if service is not None:
            if port_s is not None:
                raise errors.UpstreamBadAddress(f'service upstream "{text}" may not have port')
            if not is_name:
                raise errors.UpstreamBadAddress(f'service upstream "{text}" requires domain name')
            return host_txt, host, None, True
        if port_s is None:
            if self.kind == "stream":
                raise errors.UpstreamBadAddress(f'no port in server "{text}"')
            port_s = "80"
        return f"{host_txt}:{port_s}", host, int(port_s), is_name

    def add_server(self, body: Any, *, has_resolver: bool) -> Peer:
        if self.zone is None:
            raise errors.UpstreamStatic("upstream is static")
        vals = self._validate(body, creating=True)
        if "server" not in vals:
            raise errors.UpstreamConfFormatError('missing "server" argument')
        service = vals.get("service")
        address, host, port, is_name = self._parse_address(vals["server"], service)
        backup = vals.get("backup", False)
        if backup and (not self.has_backup_list or self.method in ("hash", "ip_hash", "random")):
            raise errors.UpstreamNoBackup(f'upstream "{self.name}" has no backup')
        if is_name and not has_resolver:
            raise errors.UpstreamConfNoResolver(f'no resolver defined to resolve "{host}"')
        for p in [*self.peers, *self.parents]:
            if p.name == address and p.parent is None and p.backup == backup:
                raise errors.EntryExists(f'server "{address}" already exists')
        if self.reserve_memory is not None and not self.reserve_memory(address, address):
            raise errors.UpstreamOutOfMemory(f'upstream "{self.name}" memory exhausted')
        conf = ServerConf(
            address=address,
            host=host,
            port=port,
            weight=vals.get("weight", 1),
            max_conns=vals.get("max_conns", 0),
            max_fails=vals.get("max_fails", 1),
            fail_timeout_ms=vals.get("fail_timeout", 10_000),
            backup=backup,
            down=vals.get("down", False),
            drain=vals.get("drain", False),
            slow_start_ms=vals.get("slow_start", 0),
            route=vals.get("route", ""),
            service=service,
            resolve=is_name,
        )
        peer = self._add_conf(conf, self.env.now)
        if peer in self.parents:
            # resolved at once through the node's resolver, and kept up to date from then on
            self._resolve_parent(peer, self.env.now)
            self._schedule()
        self._rebuild()
        if peer not in self.parents and self.on_peer_added is not None:
            self.on_peer_added(peer)  # health checks take the new server on
        return peer

    def patch_server(self, pid: int, body: Any) -> Peer:
        if self.zone is None:
            raise errors.UpstreamStatic("upstream is static")
        peer = self.peer(pid)
        vals = self._validate(body, creating=False)
        if "id" in body and body["id"] != pid:
            raise errors.UpstreamConfFormatError('invalid "id" value')
        for key in ("backup", "service"):
            if key in vals and vals[key] != getattr(peer, key):
                raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
        self.epoch += 1  # a check below may refuse after a field has changed
        if "server" in vals:
            address, host, port, is_name = self._parse_address(vals["server"], None)
            if address != peer.name:
                if peer.parent is not None or peer.service is not None or peer in self.parents:
                    raise errors.UpstreamServerImmutable(f'server "{pid}" address is immutable')
                if is_name:
                    raise errors.UpstreamBadAddress(f'invalid "server" argument "{vals["server"]}"')
                peer.name = peer.server = peer.address = address
                peer.host, peer.port = host, port
        if "weight" in vals and vals["weight"] != peer.weight:
            if peer.parent is not None:
                raise errors.UpstreamServerWeightImmutable(f'server "{pid}" weight is immutable')
            peer.weight = vals["weight"]
            peer.effective_weight = peer.weight
        targets = [peer, *self.children_of(peer)] if peer in self.parents else [peer]
        for target in targets:
            if target is not peer and "weight" in vals:
                target.weight = target.effective_weight = peer.weight
            for key, attr in _PATCHABLE:
                if key in vals:
                    setattr(target, attr, vals[key])
            if vals.get("down") is False:
                target.clear_fails(self.env.now)
        self._rebuild()
        return peer

    def remove_server(self, pid: int) -> list[Peer]:
        if self.zone is None:
            raise errors.UpstreamStatic("upstream is static")
        peer = self.peer(pid)
        if peer.parent is not None:
            raise errors.UpstreamServerImmutable(f'server "{pid}" not removable')
        self.epoch += 1
        if peer in self.parents:
            for child in self.children_of(peer):
                self._drop_peer(child)
            peer.removed = True
            self.parents.remove(peer)
            del self._resolve_confs[peer.id]
            del self._resolve_due[peer.id]
        else:
            self._drop_peer(peer)
        self._rebuild()
        return list(self.peers)

    def servers_conf(self) -> list[dict]:
        return [p.conf_dict(self.kind) for p in self.conf_peers()]
