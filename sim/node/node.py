"""One NGINX Plus instance: workers, client connections, requests, zones, reload and crash.

A node is built from a typed nginx configuration. It owns what one nginx process tree would
own: the worker processes (each with its connection and request counters), the http server and
location zones, the upstreams (http and stream), the proxy caches, keyval zones, limit zones,
health checkers and the stream side. Client requests enter through :meth:`Node.handle`; a
location with ``return`` answers at once, one with ``proxy_pass`` goes through the cache and
:class:`sim.http.proxy.Proxy`; the response updates every counter on its way out. Beside
this module: :mod:`sim.node.cycle` turns the configuration into the node's run-time state (on
start, reload and restart), :mod:`sim.node.route` keeps the routing memo, :mod:`sim.node.upstream_cache`
and :mod:`sim.node.variables` hold the proxy cache's share of the request path and the nginx
variables, and :mod:`sim.node.shm` the slab accounting of the shared memory zones.

Lifecycle: :meth:`reload` bumps ``generation`` and reapplies the configuration (run-time
changes to upstreams are lost, ids restart at 0, as on a real reload without ``state``);
:meth:`crash` loses all in-memory state and in-flight requests; :meth:`restart` brings a new
process up (statistics from zero, keyval ``state`` files and on-disk caches reloaded);
:meth:`crash_worker` kills one worker, which the master respawns (``processes.respawned``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simpy.events import Timeout

from sim.conf.config import NginxConf
from sim.core.clock import NodeClock
from sim.core.eventq import FastEvent, FastQueue
from sim.http import cache as cache_mod
from sim.http.cache import CacheZone
from sim.http.proxy import Proxy
from sim.http.routing import Router
from sim.http.traffic import ClientConn, LatencyHistogram, Request, Worker
from sim.node.cycle import init_cycle, start_background, stop_background
from sim.node.error_page import respond_error
from sim.node.route import Routes
from sim.node.shm import SharedMemory
from sim.node.upstream_cache import background_request, cache_finish, lookup_key
from sim.node.variables import expand as expand_vars
from sim.stream.side import StreamSide
from sim.stream.zone_sync import ZoneSync
from sim.upstream.health import HealthChecker, HealthRegistry
from sim.upstream.upstream import Upstream
from sim.zones.keyval import KeyvalZone
from sim.zones.limits import LimitConnZone, LimitReqZone, limit_conn, limit_req
from sim.zones.resolver import Resolver, ResolverZone
from sim.zones.slabs import SlabPool
from sim.zones.status import LocationZone, ServerZone, SslCounters

NGINX_VERSION = "1.25.1"
NGINX_BUILD = "nginx-plus-r30"

HIT = cache_mod.CacheStatus.HIT


class Delivery(FastEvent):
    """A response on its way to the client: :meth:`Node._complete` takes one, at once, or when
    it fires after a delay (a cache hit's ``cache_hit_ms``) as an event of the fast lane."""

    def __init__(self, node: Node, req: Request, status: int, nbytes: int) -> None:
        super().__init__()
        self.node = node
        self.req = req
        self.status = status
        self.nbytes = nbytes

    def fire(self) -> None:
        self.node._complete(self)


class Node:
    """A simulated NGINX Plus node."""

    # what sim.node.cycle.init_cycle makes of the configuration (on start, reload and restart)
    load_time: Any
    workers: list[Worker]
    server_zones: dict[str, ServerZone]
    location_zones: dict[str, LocationZone]
    upstreams: dict[str, Upstream]
    static_upstreams: dict[str, Upstream]
    _implicit: dict[str, Upstream]
    router: Router
    _loc_zone: dict[int, LocationZone | None]
    proxy: Proxy
    routes: Routes
    keyvals: dict[str, KeyvalZone]
    stream_keyvals: dict[str, KeyvalZone]
    limit_reqs: dict[str, LimitReqZone]
    limit_conns: dict[str, LimitConnZone]
    stream_limit_conns: dict[str, LimitConnZone]
    resolvers: dict[str, ResolverZone]
    http_resolver: Resolver | None
    stream_resolver: Resolver | None
    _hc_previous: dict[str, bool] | None
    hc_registry: HealthRegistry
    health_checkers: list[HealthChecker]
    caches: dict[str, CacheZone]
    stream: StreamSide | None
    zone_sync: ZoneSync | None
    started_at: Any  # set by start()

    def __init__(self, cluster, name: str, conf: NginxConf, *, index: int, address: str, params: dict | None = None):
        self.cluster = cluster
        self.env = cluster.env
        self.fq: FastQueue = cluster.env.fast  # the fast lane of sim.core.environment.Environment
        self.name = name
        self.index = index
        self.address = address
        self.network = cluster.network
        self.streams = cluster.streams
        self.params = dict(params or {})
        self.clock = NodeClock(self.env, cluster.epoch_ms, float(self.params.get("clock_offset_ms", 0.0)))
        self.conf = conf
        self.version = NGINX_VERSION
        self.build = NGINX_BUILD
        self.generation = 1  # NGINX Plus reports 1 after start; each reload adds one
        self.up = True
        self.incarnation = 0  # bumped by a crash: work of the dead process no longer counts
        self.pid_base = 1000 + 100 * index
        self.ppid = self.pid_base
        self.respawned = 0
        self.ssl = SslCounters()
        self.latency = LatencyHistogram()
        self.requests_discarded = 0
        self.worker_connections = int(self.params.get("worker_connections", 512))
        self.cache_hit_ms = float(self.params.get("cache_hit_ms", 0.2))
        self.api_hook: Any = None  # live mode: callable(req) answering API requests
        #: an observer called with every request the node accepts, as it arrives (traces, tests)
        self.on_request: Callable[[Request], Any] | None = None
        self.events: list[tuple[float, str, str]] = []
        self._rr_worker = 0
        self._next_pid = self.pid_base + 1
        self.shm = SharedMemory()  # the slab pools of upstream zones and cache keys zones
        init_cycle(self, conf, first=True)

    # --- building (sim.node.cycle) and run-time changes ------------------------------------------

    def _new_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def start(self) -> None:
        """Start the node's background activity (health checks, cache loaders, zone_sync)."""
        self.started_at = self.env.now
        start_background(self)

    def server_added(self, upstream: Upstream, peer) -> None:
        """A server was added at run time: health checks of its upstream take it on."""
        for hc in self.health_checkers:
            if hc.upstream is upstream:
                hc.on_server_added(peer)

    def resolve_name(self, host: str) -> list[str] | None:
        """Resolve a server name: through the configured resolver (counted) or the scenario's DNS."""
        if self.http_resolver is not None:
            addrs = self.http_resolver.resolve(host, self.env.now)
            if addrs is not None:
                return [self.cluster.node_address(a) for a in addrs]
            return None
        return self.cluster.resolve_name(host)

    def slab_pools(self) -> dict[str, SlabPool]:
        """Every shared memory zone with a slab allocator, by zone name, with its current use
        (the upstream zones and cache keys zones brought up to date: sim.node.shm)."""
        stream_ups = self.stream.upstreams.values() if self.stream else ()
        zones = (self.keyvals, self.stream_keyvals, self.limit_reqs, self.limit_conns, self.stream_limit_conns)
        return self.shm.slab_pools([*self.upstreams.values(), *stream_ups], self.caches, zones)

    def upstream_named(self, name: str) -> Upstream | None:
        return self.upstreams.get(name) or self.static_upstreams.get(name)

    def backend_of(self, server: str, name: str | None = None):
        return self.cluster.backend(server, name)

    def _implicit_upstream(self, address: str) -> Upstream:
        up = self._implicit.get(address)
        if up is None:
            from sim.conf.config import ServerConf, UpstreamConf

            host, _, port = address.rpartition(":")
            conf = UpstreamConf(name=address, kind="http", servers=(ServerConf(address=address, host=host, port=int(port)),))
            up = Upstream(self.env, conf, self.streams.get(f"{self.name}/implicit/{address}"), self.cluster.resolve_name)
            self._implicit[address] = up
        return up

    # --- node-wide counters (sums over workers) -------------------------------------------------

    @property
    def connections_accepted(self) -> int:
        return sum(w.accepted for w in self.workers)

    @property
    def connections_dropped(self) -> int:
        return sum(w.dropped for w in self.workers)

    @property
    def connections_active(self) -> int:
        return sum(w.active for w in self.workers)

    @property
    def connections_idle(self) -> int:
        return sum(w.idle for w in self.workers)

    @property
    def requests_total(self) -> int:
        return sum(w.requests_total for w in self.workers)

    @property
    def requests_current(self) -> int:
        return sum(w.requests_current for w in self.workers)

    def reset_processes(self) -> None:
        """DELETE /processes: the respawn counter starts again."""
        self.respawned = 0

    def reset_connections(self) -> None:
        for w in self.workers:
            w.accepted = w.dropped = 0

    def reset_requests(self) -> None:
        for w in self.workers:
            w.requests_total = 0

    # --- client connections ---------------------------------------------------------------------

    def open_conn(self, ssl: bool = False, reuse_session: bool = False, handshake_fail: str | None = None) -> ClientConn | None:
        """Accept a client connection; None when the node is down or out of worker_connections."""
        if not self.up:
            return None
        w = self.workers[self._rr_worker % len(self.workers)]
        self._rr_worker += 1
        if w.active + w.idle >= self.worker_connections:
            w.accepted += 1
            w.dropped += 1
            return None
        w.accepted += 1
        w.active += 1
        conn = ClientConn(w, ssl)
        if ssl:
            if handshake_fail:
                self.ssl.count_failure(handshake_fail)
                w.active -= 1
                conn.open = False
                return None
            self.ssl.handshakes += 1
            if reuse_session:
                self.ssl.session_reuses += 1
        return conn

    def idle_conn(self, conn: ClientConn) -> None:
        if conn.open and conn.idle_since is None:
            conn.idle_since = self.fq.now
            conn.worker.active -= 1
            conn.worker.idle += 1

    def close_conn(self, conn: ClientConn) -> None:
        if not conn.open:
            return
        conn.open = False
        if conn.idle_since is not None:
            conn.worker.idle -= 1
        else:
            conn.worker.active -= 1

    # --- requests -------------------------------------------------------------------------------

    def handle(self, conn: ClientConn, uri: str, host: str, port: int, client_ip: str, req_bytes: int,
               done=None, method: str = "GET", vars: dict | None = None, listen_address: str | None = None,
               api_handler=None) -> Request | None:
        """A request arrives on ``conn``; ``done(req)`` is called when its response is delivered."""
        if not conn.open or not self.up:
            return None
        w = conn.worker
        if conn.idle_since is not None:
            conn.idle_since = None
            w.idle -= 1
            w.active += 1
        conn.requests += 1
        req = Request(self, uri, host, client_ip, req_bytes, done, method,
                      conn, w, self.incarnation, self.fq.now)
        if vars is not None:  # otherwise the class default (None) stands
            req.vars = vars
        if api_handler is not None:
            req.api_handler = api_handler
        if self.on_request is not None:
            self.on_request(req)
        w.requests_total += 1
        w.requests_current += 1
        # the route last used for this URI, if it was for the same host, port and listen address
        # (the same string objects: a workload passes the same ones each time); otherwise the
        # full memo, keyed by all four (sim.node.route)
        routes = self.routes
        route = routes.last.get(uri)
        if route is None or route.host is not host or route.port != port or route.listen_address is not listen_address:
            route = routes.memo.get((host, port, listen_address, uri))
            if route is None:
                route = routes.route(host, port, listen_address, uri)
            if len(routes.last) < 50_000:
                routes.last[uri] = route
        si = route.server
        if si is None:
            # no server listens there: nginx would not have accepted the connection
            w.requests_current -= 1
            self.requests_discarded += 1
            return None
        req.server = si
        sz = route.sz
        req.sz = sz
        if sz is not None:
            sz.processing += 1
            sz.requests += 1
            sz.received += req_bytes
        loc = route.loc
        req.loc = loc
        if loc is None or loc.internal:
            # no location, or one that only internal redirects reach: 404, with the server's
            # (or the internal location's) error_page
            self.respond_error(req, 404)
            return req
        lz = route.lz
        if lz is not None:
            req.lz = lz
            lz.requests += 1
            lz.received += req_bytes
        if route.limited:
            # the preaccess phase: limit_req first, then limit_conn, so a request that
            # limit_req delays holds no limit_conn slot while it waits
            if loc.limit_req:
                outcome, delay = limit_req(
                    [(self.limit_reqs[c.zone], expand_vars(self.limit_reqs[c.zone].conf.key, req), c) for c in loc.limit_req],
                    self.env.now,
                )
                if outcome == "rejected":
                    self.respond_error(req, loc.limit_req[0].status)
                    return req
                if delay > 0:
                    ev = Timeout(self.env, delay, req)
                    ev.callbacks.append(self._after_delay)
                    return req
            if loc.limit_conn and not self._limit_conn(req, loc):
                return req
        zone = route.zone
        if zone is None:
            self._dispatch(req, loc)
            return req
        # a location that only proxies through a cache (Routes.hit_plan): what _dispatch and
        # _cache_start would do, without deciding it again, and a fresh hit served at once
        req.upstream = route.upstream
        now = req.t0  # still the arrival's instant
        cnode = route.cnode
        if cnode is None or not cnode.indexed:
            cnode = route.cnode = zone.node_of(route.key)
        entry = None if cnode is None else zone.hit_node(cnode, now)
        if entry is not None:
            req.cache_status = HIT
            self.respond(req, entry.status_code, entry.nbytes, self.cache_hit_ms)
        else:
            self._cache_continue(req, zone, zone.lookup(route.key, now, loc.proxy))
        return req

    def _limit_conn(self, req: Request, loc) -> bool:
        """limit_conn for ``req``; False when it was rejected (and answered)."""
        outcome, held = limit_conn([(self.limit_conns[c.zone], expand_vars(self.limit_conns[c.zone].conf.key, req), c)
                                    for c in loc.limit_conn])
        if outcome == "rejected":
            self.respond_error(req, loc.limit_conn[0].status)
            return False
        req.limit_conns = held or None
        return True

    def _release_conns(self, req: Request) -> None:
        """The request is finalized as far as limit_conn is concerned: its slots are free."""
        held = req.limit_conns
        if held:
            req.limit_conns = None
            for zone, key in held:
                zone.release(key)

    def _after_delay(self, ev) -> None:
        """limit_req's delay is over: the request resumes in its location, after limit_req (it
        was counted there once, as delayed), with limit_conn and then the content phase."""
        req = ev._value
        if req.final:
            return
        loc = req.loc
        if loc.limit_conn and not self._limit_conn(req, loc):
            return
        self._dispatch(req, loc)

    def _dispatch(self, req: Request, loc) -> None:
        """Run the location's content handler: return, api, proxy_pass, or nothing (404)."""
        if loc.return_code is not None:
            if loc.return_text is None and loc.return_code >= 300:
                self.respond_error(req, loc.return_code)  # nginx's own page, or the error_page
            else:
                self.respond(req, loc.return_code, len(loc.return_text or ""))
        elif loc.api or loc.root is not None or loc.alias is not None:
            # the API and files on disk are answered by the caller's handler or the live hook
            handler = req.api_handler or self.api_hook
            # nginx answers these within one turn of its event loop and finalizes the request
            # there, which frees its limit_conn slots; the handler (the live server's ASGI app)
            # may take wall time that is not nginx's
            self._release_conns(req)
            if handler is not None:
                handler(req)
            else:
                self.respond(req, 404, 0)
        elif loc.upstream is not None or loc.proxy_pass_address is not None:
            up = self.upstream_named(loc.upstream) if loc.upstream else self._implicit_upstream(loc.proxy_pass_address)
            req.upstream = up
            if loc.proxy.cache is not None:
                self._cache_start(req, loc)
            else:
                self.proxy.start(req)
        else:
            self.respond_error(req, 404)

    # --- proxy cache (with sim.node.upstream_cache) --------------------------------------------

    def _cache_start(self, req: Request, loc) -> None:
        """Look the request up in its location's cache: serve from it, or go to the upstream."""
        zone = self.caches[loc.proxy.cache]
        key = lookup_key(req, loc.proxy)
        if key is None:  # proxy_cache_bypass
            self.proxy.start(req)
            return
        self._cache_continue(req, zone, zone.lookup(key, self.env.now, loc.proxy))

    def _cache_continue(self, req: Request, zone: CacheZone, lk) -> None:
        if lk.wait is not None:  # proxy_cache_lock: another request is filling this key
            incarnation = self.incarnation

            def retry(_ev, req=req, zone=zone, lk=lk):
                if incarnation == self.incarnation and not req.final:
                    self._cache_continue(req, zone, zone.lookup(lk.key, self.env.now, req.loc.proxy, retry=lk))

            lk.wait.callbacks.append(retry)
            return
        status = lk.status
        S = cache_mod.CacheStatus
        if status in (S.HIT, S.UPDATING, S.STALE):
            entry = lk.entry
            zone.count(status, entry.nbytes)
            if lk.updater:  # proxy_cache_background_update
                self.proxy.start(background_request(self, req, lk, entry, self.incarnation, self.env.now))
            else:
                zone.release(lk)
            req.cache_status = status
            self.respond(req, entry.status_code, entry.nbytes, delay=self.cache_hit_ms)
            return
        req.cache_status = status
        req.cache_key = lk
        req.cache_entry = lk.entry if lk.conditional else None
        self.proxy.start(req)

    def _cache_finish(self, req: Request, status: int, nbytes: int, failure: str | None) -> tuple[int, int]:
        """The upstream answered (or failed) for a cached location: see :func:`cache_finish`."""
        zone = self.caches.get(req.loc.proxy.cache)
        if zone is None:  # a reload removed this cache while the request was at the upstream
            return status, nbytes
        now = self.env.now
        backend = None
        if req.attempt is not None:
            backend = self.backend_of(req.attempt.peer.server, req.attempt.peer.name)
        return cache_finish(req, zone, backend, now, status, nbytes, failure)

    def expand(self, template: str, req: Request) -> str:
        """Evaluate the few nginx variables the model knows in a key template (sim.node.variables)."""
        return expand_vars(template, req)

    def upstream_response(self, req: Request, status: int, nbytes: int) -> None:
        """The proxy obtained a response; it reaches the client now."""
        # a fetch begun by a process that has since crashed writes nothing to the cache
        if req.cache_status is not None and req.incarnation == self.incarnation:
            status, nbytes = self._cache_finish(req, status, nbytes, None)
        if req.conn is not None:  # a background cache update has nobody to answer
            if status >= 300 and req.loc.intercept_errors:
                self.respond_error(req, status, nbytes)
            else:
                self.respond(req, status, nbytes)

    def upstream_failed(self, req: Request, status: int, kind: str) -> None:
        """No usable response from the upstream (``kind`` is "error" or "timeout")."""
        nbytes = 0
        if req.cache_status is not None and req.incarnation == self.incarnation:
            status, nbytes = self._cache_finish(req, status, 0, kind)
        if req.conn is not None:
            self.respond_error(req, status, nbytes)

    def respond_error(self, req: Request, status: int, nbytes: int = 0) -> None:
        respond_error(self, req, status, nbytes)  # nginx's own error, or its error_page

    def respond(self, req: Request, status: int, nbytes: int, delay: float = 0.0) -> None:
        """Send the response (after ``delay`` ms) and update every counter on the way out."""
        delivery = Delivery(self, req, status, nbytes)
        if delay > 0:
            self.fq.push(delivery, delay)
        else:
            self._complete(delivery)

    def _complete(self, delivery: Delivery) -> None:
        req = delivery.req
        if req.final:
            return
        if req.incarnation != self.incarnation:
            # the process that took this request has crashed: the client saw its connection reset
            req.final = True
            req.status = 0
            self._hand_back(req)
            return
        req.final = True
        if req.limit_conns:
            self._release_conns(req)
        status = delivery.status
        if req.err_status:  # an error_page redirect: the original (or its named) status is sent
            status = req.err_status
        nbytes = delivery.nbytes
        req.status = status
        req.resp_bytes = nbytes
        sz = req.sz
        if sz is not None:
            sz.processing -= 1
            sz.respond(status, nbytes)
        lz = req.lz
        if lz is not None:
            lz.respond(status, nbytes)
        w = req.worker
        if w is not None:
            w.requests_current -= 1
        self.latency.add(self.fq.now - req.t0)
        self._hand_back(req)

    @staticmethod
    def _hand_back(req: Request) -> None:
        """The request has ended (answered, reset or discarded): tell its client. The request
        and its last attempt refer to each other; the cycle is broken here so that both go when
        the last reference does, not at the cyclic collector's next pass."""
        done = req.done
        if done is not None:
            done(req)
        req.attempt = None

    def discard(self, req: Request) -> None:
        """The request ends without a response (client gone)."""
        if req.final or req.incarnation != self.incarnation:
            return
        req.final = True
        if req.limit_conns:
            self._release_conns(req)
        if req.sz is not None:
            req.sz.processing -= 1
            req.sz.discarded += 1
        if req.lz is not None:
            req.lz.discarded += 1
        w = req.worker
        if w is not None:
            w.requests_current -= 1
        self._hand_back(req)

    # --- lifecycle ------------------------------------------------------------------------------

    def reload(self, conf: NginxConf | None = None) -> None:
        """``nginx -s reload``: generation + 1, new load time, configuration applied again."""
        self.generation += 1
        init_cycle(self, conf or self.conf, first=False)

    def crash_worker(self, wid: int = 0) -> None:
        """A worker dies abnormally and the master respawns it."""
        w = self.workers[wid % len(self.workers)]
        self.respawned += 1
        w.pid = self._new_pid()
        w.active = w.idle = 0
        self.events.append((self.env.now, "worker", f"worker {w.id} respawned"))

    def crash(self) -> None:
        """The whole node dies: connections and in-memory state are gone until :meth:`restart`."""
        self.up = False
        self.incarnation += 1
        stop_background(self)  # health checks, resolving, stream sessions, zone_sync connections
        for w in self.workers:
            w.active = w.idle = w.requests_current = 0
        self.events.append((self.env.now, "node", "crashed"))

    def restart(self) -> None:
        """A new nginx process: statistics from zero, configuration loaded afresh."""
        self.up = True
        self.generation = 1
        self.respawned = 0
        self.ssl = SslCounters()
        self.ppid = self._new_pid()
        self.server_zones = {}
        self.location_zones = {}
        self.workers = []
        self.shm = SharedMemory()  # a new process maps its shared memory afresh
        init_cycle(self, self.conf, first=True)
        self.events.append((self.env.now, "node", "restarted"))

