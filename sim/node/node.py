"""One NGINX Plus instance: workers, client connections, requests, zones, reload and crash.

A node is built from a typed nginx configuration. It owns what one nginx process tree would
own: the worker processes (each with its connection and request counters), the http server and
location zones, the upstreams (http and stream), the proxy caches, keyval zones, limit zones,
health checkers and the stream side. Client requests enter through :meth:`Node.handle`; a
location with ``return`` answers at once, one with ``proxy_pass`` goes through the cache and
:class:`sim.http.proxy.Proxy`; the response updates every counter on its way out.

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
from sim.http.cache import CacheNode, CacheZone
from sim.http.proxy import Proxy
from sim.http.routing import Router
from sim.http.traffic import ClientConn, LatencyHistogram, Request, Worker
from sim.stream.side import StreamSide
from sim.stream.zone_sync import ZoneSync
from sim.upstream.health import HealthChecker, HealthRegistry
from sim.upstream.upstream import Upstream
from sim.zones.keyval import KeyvalZone
from sim.zones.limits import LimitConnZone, LimitReqZone, limit_conn, limit_req
from sim.zones.resolver import Resolver, ResolverZone
from sim.zones.slabs import SlabPool
from sim.zones.status import LocationZone, ServerZone, SslCounters

DEFAULT_CACHE_KEY = "$scheme$proxy_host$request_uri"
NGINX_VERSION = "1.25.1"
NGINX_BUILD = "nginx-plus-r30"

HIT = cache_mod.CacheStatus.HIT


class Route:
    """What the node decided for requests to one (host, port, listen address, URI), for the
    life of one configuration: the server block (``server``, an index, None when no server
    listens there) and its zone, the location (``loc``, None: 404) and its zone, whether
    limit_conn or limit_req apply (``limited``), and for a location that only proxies through
    a cache (:meth:`Node._hit_plan`), the cache ``zone``, the ``upstream`` and the cache ``key``
    (``$scheme$proxy_host$request_uri``)."""

    __slots__ = ("server", "sz", "loc", "lz", "limited", "zone", "upstream", "key", "host", "port", "listen_address",
                 "cnode")

    def __init__(self, server: int | None, loc: Any, sz: ServerZone | None, lz: LocationZone | None,
                 plan: tuple[CacheZone, Upstream] | None, host: str, port: int, listen_address: str | None,
                 uri: str) -> None:
        self.host = host
        self.port = port
        self.listen_address = listen_address
        self.server = server
        self.loc = loc
        self.sz = sz
        self.lz = lz
        self.limited = loc is not None and bool(loc.limit_conn or loc.limit_req)
        self.zone: CacheZone | None = None
        self.upstream: Any = None
        self.key = ""
        self.cnode: CacheNode | None = None  # the cache's node for key, while it stays indexed
        if plan is not None:
            self.zone, self.upstream = plan
            self.key = "http" + plan[1].name + uri


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
        self.generation = 0
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
        self._pools: dict[str, SlabPool] = {}  # upstream zones and cache keys zones
        self._held: dict[str, dict] = {}
        self._reserved: dict[str, dict] = {}  # memory taken for servers being added
        self._build(conf, first=True)

    # --- building -----------------------------------------------------------------------------

    def _new_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def _build(self, conf: NginxConf, first: bool) -> None:
        env = self.env
        self._stop_resolving()  # the upstreams of the previous configuration, if any
        self.conf = conf
        self.load_time = env.now
        n_workers = max(1, conf.worker_processes)
        old_workers = getattr(self, "workers", None)
        self.workers = [Worker(i, self._new_pid()) for i in range(n_workers)]
        if old_workers and not first:
            # a reload starts new workers; the node-wide counters carry on
            for w, old in zip(self.workers, old_workers, strict=False):
                w.accepted, w.dropped, w.requests_total = old.accepted, old.dropped, old.requests_total
        http = conf.http
        old_sz = getattr(self, "server_zones", {})
        old_lz = getattr(self, "location_zones", {})
        self.server_zones: dict[str, ServerZone] = {}
        self.location_zones: dict[str, LocationZone] = {}
        self.upstreams: dict[str, Upstream] = {}
        self.static_upstreams: dict[str, Upstream] = {}
        self._implicit: dict[str, Upstream] = {}
        self.router = Router(http.servers if http else ())
        self._server_zone_of: list[ServerZone | None] = []
        self._loc_zone: dict[int, LocationZone | None] = {}
        if http:
            for s in http.servers:
                zname = s.status_zone
                if zname:
                    z = self.server_zones.get(zname) or old_sz.get(zname) or ServerZone(zname)
                    self.server_zones[zname] = z
                    self._server_zone_of.append(z)
                else:
                    self._server_zone_of.append(None)
                for loc in _walk(s.locations):
                    if loc.status_zone:
                        z = self.location_zones.get(loc.status_zone) or old_lz.get(loc.status_zone)
                        z = z or LocationZone(loc.status_zone)
                        self.location_zones[loc.status_zone] = z
            for uname, uconf in http.upstreams.items():
                up = Upstream(env, uconf, self.streams.get(f"{self.name}/upstream/{uname}/lb"), self.cluster.resolve_name)
                (self.upstreams if uconf.zone else self.static_upstreams)[uname] = up
        self.proxy = Proxy(self)
        # what _route found for (host, port, listen address, uri), and what _hit_plan said for
        # id(location): for this configuration (whose locations live as long as it does, so
        # their ids are not reused), its router, and the caches and upstreams built here
        self._routes: dict[tuple[str, int, str | None, str], Route] = {}
        self._last_route: dict[str, Route] = {}  # by URI, the route last used (see handle)
        self._hit_plans: dict[int, tuple[CacheZone, Upstream] | None] = {}
        self._build_keyvals(conf, keep=not first)
        self._build_limits_and_resolvers(conf, keep=not first)
        self._build_health_checks(conf)
        self._build_caches(conf, first)
        # stream side and zone_sync (sim/stream.py, sim/zone_sync.py): a reload or restart replaces
        # them (zone_sync reconnects and exchanges snapshots); they run once the node has started
        old_stream, old_zone_sync = getattr(self, "stream", None), getattr(self, "zone_sync", None)
        self.stream = StreamSide(self, conf.stream, None if first else old_stream) if conf.stream else None
        self.zone_sync = ZoneSync.for_node(self)  # None without a stream server with `zone_sync`
        for old in (old_stream, old_zone_sync):
            if old is not None:
                old.stop()
        if getattr(self, "started_at", None) is not None and self.up:
            for part in (self.stream, self.zone_sync):
                if part is not None:
                    part.start()
        stream_ups = self.stream.upstreams.values() if self.stream is not None else ()
        for up in [*self.upstreams.values(), *stream_ups]:
            up.reserve_memory = lambda name, server, up=up: self._reserve_peer_memory(up, name, server)
        # `server ... resolve`: first resolution now, through the side's resolver (counted in its
        # status zone), then again whenever an answer expires; new addresses get health checks
        for up in self.upstreams.values():
            up.on_peer_added = lambda peer, up=up: self.server_added(up, peer)
            up.start_resolving(self.http_resolver, self.cluster.node_address)
        for up in stream_ups:
            up.on_peer_added = lambda peer, up=up, side=self.stream: side.server_added(up, peer)
            up.start_resolving(self.stream_resolver, self.cluster.node_address)
        self.events.append((env.now, "config", "loaded" if first else "reloaded"))

    def _build_caches(self, conf: NginxConf, first: bool) -> None:
        """Cache zones: one per proxy_cache_path. Entries on disk outlive reloads and restarts."""
        old = getattr(self, "caches", {})
        self.caches: dict[str, CacheZone] = {}
        if not conf.http:
            return
        for name, cc in conf.http.cache_paths.items():
            z = old.get(name)
            if z is None:
                z = CacheZone(cc, self.env)
            elif first:  # a new process after a crash: the disk is still there
                z.restart()
            else:
                z.reload(cc)
            self.caches[name] = z

    def _build_health_checks(self, conf: NginxConf) -> None:
        """One checker per (location with health_check, check); a reload replaces them."""
        previous: dict[str, bool] = {}
        for hc in getattr(self, "health_checkers", []):
            previous.update(hc.stop())
        self._hc_previous = previous or None
        self.hc_registry = HealthRegistry()
        self.health_checkers: list[HealthChecker] = []
        http = conf.http
        if not http:
            return
        for si, s in enumerate(http.servers):
            for li, loc in enumerate(_walk(s.locations)):
                if not loc.health_checks or loc.upstream is None:
                    continue
                up = self.upstream_named(loc.upstream)
                for ci, hc in enumerate(loc.health_checks):
                    match = http.matches.get(hc.match) if hc.match else None
                    rng = self.streams.get(f"{self.name}/health/{si}/{li}/{ci}")
                    self.health_checkers.append(
                        HealthChecker(self.env, self.name, up, hc, match, self.backend_of, self.network, rng,
                                      loc.proxy.connect_timeout_ms, loc.proxy.read_timeout_ms,
                                      kind="http", registry=self.hc_registry)
                    )
        if getattr(self, "started_at", None) is not None and self.up:
            self._start_health_checks()

    def _start_health_checks(self) -> None:
        for hc in self.health_checkers:
            hc.start(self._hc_previous)

    def _stop_resolving(self) -> None:
        stream = getattr(self, "stream", None)
        for up in [*getattr(self, "upstreams", {}).values(), *(stream.upstreams.values() if stream else ())]:
            up.stop_resolving()

    def server_added(self, upstream: Upstream, peer) -> None:
        """A server was added at run time: health checks of its upstream take it on."""
        for hc in self.health_checkers:
            if hc.upstream is upstream:
                hc.on_server_added(peer)

    def _build_limits_and_resolvers(self, conf: NginxConf, keep: bool) -> None:
        """limit_req/limit_conn zones and resolver status zones; a reload keeps unchanged zones."""
        old_req = getattr(self, "limit_reqs", {}) if keep else {}
        old_conn = getattr(self, "limit_conns", {}) if keep else {}
        old_sconn = getattr(self, "stream_limit_conns", {}) if keep else {}
        old_res = getattr(self, "resolvers", {}) if keep else {}
        self.limit_reqs: dict[str, LimitReqZone] = {}
        self.limit_conns: dict[str, LimitConnZone] = {}
        self.stream_limit_conns: dict[str, LimitConnZone] = {}
        self.resolvers: dict[str, ResolverZone] = {}
        self.http_resolver: Resolver | None = None
        self.stream_resolver: Resolver | None = None
        http, stream = conf.http, conf.stream
        if http:
            for name, zc in http.limit_req_zones.items():
                z = old_req.get(name)
                if z is None or z.conf != zc:
                    # the node's clock stamps the changes zone_sync sends (`sync`)
                    z = LimitReqZone(zc, clock=self.clock, node_name=self.name)
                self.limit_reqs[name] = z
            for name, czc in http.limit_conn_zones.items():
                cz = old_conn.get(name)
                self.limit_conns[name] = cz if cz is not None and cz.conf == czc else LimitConnZone(czc)
        if stream:
            for name, czc in stream.limit_conn_zones.items():
                cz = old_sconn.get(name)
                self.stream_limit_conns[name] = cz if cz is not None and cz.conf == czc else LimitConnZone(czc)
        for side, attr in ((http, "http_resolver"), (stream, "stream_resolver")):
            if side is None or not side.resolvers:
                continue
            rc = side.resolvers[0]
            zone = None
            if rc.status_zone:
                zone = self.resolvers.get(rc.status_zone) or old_res.get(rc.status_zone) or ResolverZone(rc.status_zone)
                self.resolvers[rc.status_zone] = zone
            setattr(self, attr, Resolver(rc, self.cluster.hosts, zone))

    def resolve_name(self, host: str) -> list[str] | None:
        """Resolve a server name: through the configured resolver (counted) or the scenario's DNS."""
        if self.http_resolver is not None:
            addrs = self.http_resolver.resolve(host, self.env.now)
            if addrs is not None:
                return [self.cluster.node_address(a) for a in addrs]
            return None
        return self.cluster.resolve_name(host)

    def _build_keyvals(self, conf: NginxConf, keep: bool) -> None:
        """Keyval zones of http and stream; a reload keeps zones that still exist (shared memory)."""
        old_http = getattr(self, "keyvals", {}) if keep else {}
        old_stream = getattr(self, "stream_keyvals", {}) if keep else {}
        state_dir = self.cluster.state_dir
        sdir = None if state_dir is None else state_dir / self.name
        self.keyvals: dict[str, KeyvalZone] = {}
        self.stream_keyvals: dict[str, KeyvalZone] = {}
        for side, old, target in (
            (conf.http, old_http, self.keyvals),
            (conf.stream, old_stream, self.stream_keyvals),
        ):
            if side is None:
                continue
            for name, kc in side.keyval_zones.items():
                z = old.get(name)
                if z is None or z.conf != kc:
                    z = KeyvalZone(kc, self.env, self.clock, self.name, sdir)
                    if kc.state:
                        z.load_state()
                target[name] = z

    def start(self) -> None:
        """Start the node's background activity (health checks, cache loaders, zone_sync)."""
        self.started_at = self.env.now
        self._start_health_checks()
        for part in (self.stream, self.zone_sync):  # sim/stream.py, sim/zone_sync.py
            if part is not None:
                part.start()

    # --- shared memory (the /slabs/ view) -------------------------------------------------------

    #: bytes nginx allocates in an upstream zone per peer (the peer structure with the Plus
    #: statistics, its sockaddr) besides the two name strings; an estimate, see docs/decisions.md
    PEER_STRUCT_BYTES = 344
    SOCKADDR_BYTES = 28
    #: bytes of one cache keys-zone node (ngx_http_file_cache_node_t with the Plus extras)
    CACHE_NODE_BYTES = 120

    def slab_pools(self) -> dict[str, SlabPool]:
        """Every shared memory zone with a slab allocator, by zone name, with its current use.

        Keyval and limit zones allocate from their pools as they change. Upstream zones and
        cache keys zones are brought up to date here: one allocation set per live peer (freed
        when the peer is removed) and one node per key in the keys zone.
        """
        pools: dict[str, SlabPool] = {}
        for up in [*self.upstreams.values(), *(self.stream.upstreams.values() if self.stream else ())]:
            if up.zone is None:
                continue
            pool = self._zone_pool(up.zone, up.conf.zone_size or 32 * 1024)
            self._sync_peer_allocations(up.zone, pool, up)
            pools[up.zone] = pool
        for name, cz in self.caches.items():
            pool = self._zone_pool("cache:" + name, cz.conf.keys_zone_size)
            self._sync_count("cache:" + name, pool, len(cz), self.CACHE_NODE_BYTES)
            pools[name] = pool
        for zones in (self.keyvals, self.stream_keyvals, self.limit_reqs, self.limit_conns, self.stream_limit_conns):
            for name, z in zones.items():
                pools[name] = z.slab
        return pools

    def _zone_pool(self, key: str, size: int) -> SlabPool:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = SlabPool(size)
            self._held[key] = {}  # what the model holds in the pool: peer key -> handles
        return pool

    def _peer_allocation_sizes(self, name: str, server: str) -> tuple[int, ...]:
        return (self.PEER_STRUCT_BYTES, len(name) + 1, len(server) + 1, self.SOCKADDR_BYTES)

    def _sync_peer_allocations(self, zone: str, pool: SlabPool, up) -> None:
        held = self._held[zone]
        reserved = self._reserved.setdefault(zone, {})
        live = {(up.name, p.id): p for p in up.peers}
        for key in [k for k in held if k[0] == up.name and k not in live]:
            for h in held.pop(key):
                pool.free(h)
        for key, p in live.items():
            if key in held:
                continue
            handles = reserved.pop((up.name, p.name), None)
            if handles is None:
                handles = []
                for nbytes in self._peer_allocation_sizes(p.name, p.server):
                    h = pool.alloc(nbytes)
                    if h is not None:
                        handles.append(h)
            held[key] = handles

    def _reserve_peer_memory(self, up, name: str, server: str) -> bool:
        """Allocate a server's memory in its upstream zone before it is added (False: zone full)."""
        pool = self._zone_pool(up.zone, up.conf.zone_size or 32 * 1024)
        self._sync_peer_allocations(up.zone, pool, up)
        handles: list = []
        for nbytes in self._peer_allocation_sizes(name, server):
            h = pool.alloc(nbytes)
            if h is None:
                for taken in handles:
                    pool.free(taken)
                return False
            handles.append(h)
        self._reserved.setdefault(up.zone, {})[(up.name, name)] = handles
        return True

    def _sync_count(self, zone: str, pool: SlabPool, count: int, nbytes: int) -> None:
        held = self._held[zone].setdefault("nodes", [])
        while len(held) > count:
            pool.free(held.pop())
        while len(held) < count:
            h = pool.alloc(nbytes)
            if h is None:
                break
            held.append(h)

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
        # full memo, keyed by all four
        route = self._last_route.get(uri)
        if route is None or route.host is not host or route.port != port or route.listen_address is not listen_address:
            route = self._routes.get((host, port, listen_address, uri))
            if route is None:
                route = self._route(host, port, listen_address, uri)
            if len(self._last_route) < 50_000:
                self._last_route[uri] = route
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
        if loc is None:
            self.respond(req, 404, 0)
            return req
        lz = route.lz
        if lz is not None:
            req.lz = lz
            lz.requests += 1
            lz.received += req_bytes
        if route.limited:
            if loc.limit_conn:
                outcome, held = limit_conn([(self.limit_conns[c.zone], self.expand(self.limit_conns[c.zone].conf.key, req), c) for c in loc.limit_conn])
                if outcome == "rejected":
                    self.respond(req, loc.limit_conn[0].status, 0)
                    return req
                req.limit_conns = held or None
            if loc.limit_req:
                outcome, delay = limit_req(
                    [(self.limit_reqs[c.zone], self.expand(self.limit_reqs[c.zone].conf.key, req), c) for c in loc.limit_req],
                    self.env.now,
                )
                if outcome == "rejected":
                    self.respond(req, loc.limit_req[0].status, 0)
                    return req
                if delay > 0:
                    ev = Timeout(self.env, delay, req)
                    ev.callbacks.append(self._after_delay)
                    return req
        zone = route.zone
        if zone is None:
            self._dispatch(req, loc)
            return req
        # a location that only proxies through a cache (_hit_plan): what _dispatch and
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

    def _route(self, host: str, port: int, listen_address: str | None, uri: str) -> Route:
        """The :class:`Route` of a request, remembered for the next one with the same host, port,
        listen address and URI: one lookup per request instead of the router's two memos, the
        zones' and the plan's, and the same key string each time, whose hash is kept."""
        router = self.router
        si = router.server_for(host, port, listen_address)
        loc = None if si is None else router.location_for(si, uri)
        plan: tuple[CacheZone, Upstream] | None = None
        lz: LocationZone | None = None
        if loc is not None:
            if id(loc) in self._hit_plans:
                plan = self._hit_plans[id(loc)]
            else:
                plan = self._hit_plans[id(loc)] = self._hit_plan(loc)
            if loc.status_zone:
                lz = self.location_zones[loc.status_zone]
        route = Route(si, loc, None if si is None else self._server_zone_of[si], lz, plan, host, port, listen_address, uri)
        if len(self._routes) < 50_000:
            self._routes[(host, port, listen_address, uri)] = route
        return route

    def _hit_plan(self, loc) -> tuple[CacheZone, Upstream] | None:
        """``(cache zone, upstream)`` when the content phase of ``loc`` is proxy_pass to a named
        upstream through a cache keyed by the default key with neither proxy_cache_bypass nor
        proxy_no_cache; None for every other location.

        Most requests of a caching setup take this one road, so the node decides it once per
        location instead of per request.
        """
        proxy = loc.proxy
        if (loc.return_code is not None or loc.api or loc.root is not None or loc.alias is not None
                or not loc.upstream or proxy.cache is None):
            return None
        if proxy.cache_key != DEFAULT_CACHE_KEY or proxy.cache_bypass or proxy.no_cache:
            return None
        up = self.upstream_named(loc.upstream)
        zone = self.caches.get(proxy.cache)
        if up is None or zone is None:
            return None  # left to _dispatch, which fails as it always did
        return zone, up

    def _after_delay(self, ev) -> None:
        req = ev._value
        if not req.final:
            self._dispatch(req, req.loc)

    def _dispatch(self, req: Request, loc) -> None:
        """Run the location's content handler: return, api, proxy_pass, or nothing (404)."""
        if loc.return_code is not None:
            self.respond(req, loc.return_code, len(loc.return_text or ""))
        elif loc.api or loc.root is not None or loc.alias is not None:
            # the API and files on disk are answered by the caller's handler or the live hook
            handler = req.api_handler or self.api_hook
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
            self.respond(req, 404, 0)

    # --- proxy cache ------------------------------------------------------------------------------

    def _cache_vars(self, req: Request) -> dict[str, str]:
        path, _, args = req.uri.partition("?")
        v = {
            "scheme": "http",
            "proxy_host": req.upstream.name,
            "request_uri": req.uri,
            "uri": path,
            "args": args,
            "host": req.host,
            "http_host": req.host,
            "remote_addr": req.client_ip,
        }
        if args:
            for part in args.split("&"):
                k, _, val = part.partition("=")
                v["arg_" + k] = val
        if req.vars:
            for k, val in req.vars.items():
                v[k.lstrip("$")] = val
        return v

    def _cache_start(self, req: Request, loc) -> None:
        """Look the request up in its location's cache: serve from it, or go to the upstream."""
        zone = self.caches[loc.proxy.cache]
        proxy = loc.proxy
        if proxy.cache_key == DEFAULT_CACHE_KEY and not proxy.cache_bypass and not proxy.no_cache:
            # the common case, without building the variables: $scheme$proxy_host$request_uri
            key = "http" + req.upstream.name + req.uri
        else:
            vars = self._cache_vars(req)
            req.vars = vars
            if proxy.cache_bypass and cache_mod.evaluate_bypass(proxy.cache_bypass, vars):
                req.cache_status = cache_mod.CacheStatus.BYPASS
                req.cache_key = cache_mod.cache_key(proxy.cache_key, vars)
                self.proxy.start(req)
                return
            key = cache_mod.cache_key(proxy.cache_key, vars)
        self._cache_continue(req, zone, zone.lookup(key, self.env.now, proxy))

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
            if lk.updater:
                # STALE from proxy_cache_background_update: this request holds the update mark,
                # so a background subrequest (no client connection: it answers nobody) fetches
                # the key as EXPIRED, is counted under its own status, and releases the mark
                bg = Request(self, req.uri, req.host, req.client_ip, req.req_bytes, None, req.method)
                bg.loc, bg.server, bg.upstream, bg.vars = req.loc, req.server, req.upstream, req.vars
                bg.incarnation = self.incarnation
                bg.t0 = self.env.now
                bg.cache_status = S.EXPIRED
                bg.cache_key = lk
                bg.cache_entry = entry if lk.proxy.cache_revalidate else None
                self.proxy.start(bg)
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
        """The upstream answered (or failed) for a cached location: count, store, and decide what
        the client gets (a stale or revalidated entry may replace the upstream's answer)."""
        S = cache_mod.CacheStatus
        proxy = req.loc.proxy
        zone = self.caches.get(proxy.cache)
        if zone is None:  # a reload removed this cache while the request was at the upstream
            return status, nbytes
        now = self.env.now
        lk = req.cache_key if req.cache_status != S.BYPASS else None
        backend = None
        if req.attempt is not None:
            backend = self.backend_of(req.attempt.peer.server, req.attempt.peer.name)
        max_age = backend.spec.cache_max_age_ms if backend is not None else None
        try:
            if lk is not None and lk.entry is not None:
                kind = failure or cache_mod.failure_kind(status)
                if kind is not None and lk.serve_stale(kind):
                    zone.count(S.STALE, lk.entry.nbytes)
                    req.cache_status = S.STALE
                    return lk.entry.status_code, lk.entry.nbytes
                if status == 304 and failure is None:
                    zone.revalidate(lk, now, cache_mod.valid_for(proxy, lk.entry.status_code, max_age))
                    zone.count(S.REVALIDATED, lk.entry.nbytes)
                    req.cache_status = S.REVALIDATED
                    return lk.entry.status_code, lk.entry.nbytes
            written = False
            if failure is None:
                valid = cache_mod.valid_for(proxy, status, max_age)
                cacheable = lk.cacheable if lk is not None else True
                if (cacheable and valid is not None
                        and not (proxy.no_cache and cache_mod.evaluate_bypass(proxy.no_cache, req.vars or self._cache_vars(req)))):
                    key = lk.key if lk is not None else cache_mod.cache_key(proxy.cache_key, req.vars or self._cache_vars(req))
                    version = backend.content_version(req.uri, now) if backend is not None else None
                    written = zone.store(key, status, nbytes, now, valid, version)
            assert req.cache_status is not None  # the callers check it
            zone.count(req.cache_status, nbytes, written)
            return status, nbytes
        finally:
            if lk is not None:
                zone.release(lk)

    def expand(self, template: str, req: Request) -> str:
        """Evaluate the few nginx variables the model knows in a key template."""
        if "$" not in template:
            return template
        path, _, args = req.uri.partition("?")
        values = {
            "$request_uri": req.uri,
            "$uri": path,
            "$args": args,
            "$remote_addr": req.client_ip,
            "$binary_remote_addr": req.client_ip,
            "$host": req.host,
            "$http_host": req.host,
            "$scheme": "http",
            "$proxy_host": req.upstream.name if req.upstream is not None else "",
            "$server_name": req.host,
        }
        if req.vars:
            values.update(req.vars)
        out = template
        for name in sorted(values, key=len, reverse=True):
            if name in out:
                out = out.replace(name, values[name])
        return out

    def upstream_response(self, req: Request, status: int, nbytes: int) -> None:
        """The proxy obtained a response; it reaches the client now."""
        # a fetch begun by a process that has since crashed writes nothing to the cache
        if req.cache_status is not None and req.incarnation == self.incarnation:
            status, nbytes = self._cache_finish(req, status, nbytes, None)
        if req.conn is not None:  # a background cache update has nobody to answer
            self.respond(req, status, nbytes)

    def upstream_failed(self, req: Request, status: int, kind: str) -> None:
        """No usable response from the upstream (``kind`` is "error" or "timeout")."""
        nbytes = 0
        if req.cache_status is not None and req.incarnation == self.incarnation:
            status, nbytes = self._cache_finish(req, status, 0, kind)
        if req.conn is not None:
            self.respond(req, status, nbytes)

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
            for zone, key in req.limit_conns:
                zone.release(key)
        status = delivery.status
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
            for zone, key in req.limit_conns:
                zone.release(key)
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
        self._build(conf or self.conf, first=False)

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
        self._stop_resolving()
        for hc in self.health_checkers:
            hc.stop()
        self.health_checkers = []
        for part in (self.stream, self.zone_sync):  # sessions and zone_sync connections die with it
            if part is not None:
                part.stop()
        for w in self.workers:
            w.active = w.idle = w.requests_current = 0
        self.events.append((self.env.now, "node", "crashed"))

    def restart(self) -> None:
        """A new nginx process: statistics from zero, configuration loaded afresh."""
        self.up = True
        self.generation = 0
        self.respawned = 0
        self.ssl = SslCounters()
        self.ppid = self._new_pid()
        self.server_zones = {}
        self.location_zones = {}
        self.workers = []
        self._pools, self._held, self._reserved = {}, {}, {}  # a new process maps its shared memory afresh
        self._build(self.conf, first=True)
        self.events.append((self.env.now, "node", "restarted"))


def _walk(locs):
    for loc in locs:
        yield loc
        yield from _walk(loc.locations)
