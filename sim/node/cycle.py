"""Turning a node's typed nginx configuration into its run-time state, as ``ngx_init_cycle`` does.

:func:`init_cycle` runs when a node is created, on every reload and on a restart. It builds the
workers, the status zones of servers and locations, the upstreams, the router and the proxy,
the keyval, limit and resolver zones, the health checkers, the cache zones and the stream side
with zone_sync, carrying over what a real reload keeps (shared memory zones whose configuration
did not change, the node-wide counters, cache contents on disk). The functions take the
:class:`sim.node.node.Node` they fill in; they are not on the per-request path.
"""

from __future__ import annotations

from typing import Any

from sim.conf.config import NginxConf
from sim.http.cache import CacheZone
from sim.http.proxy import Proxy
from sim.http.routing import Router
from sim.http.traffic import Worker
from sim.node.route import Routes
from sim.stream.side import StreamSide
from sim.stream.zone_sync import ZoneSync
from sim.upstream.health import HealthChecker, HealthRegistry
from sim.upstream.upstream import Upstream
from sim.zones.keyval import KeyvalZone
from sim.zones.limits import LimitConnZone, LimitReqZone
from sim.zones.resolver import Resolver, ResolverZone
from sim.zones.status import LocationZone, ServerZone


def init_cycle(node: Any, conf: NginxConf, first: bool) -> None:
    """Apply ``conf`` to ``node``: ``first`` for a new process (start or restart), else a reload."""
    env = node.env
    stop_resolving(node)  # the upstreams of the previous configuration, if any
    node.conf = conf
    node.load_time = env.now
    n_workers = max(1, conf.worker_processes)
    old_workers = getattr(node, "workers", None)
    node.workers = [Worker(i, node._new_pid()) for i in range(n_workers)]
    if old_workers and not first:
        # a reload starts new workers; the node-wide counters carry on
        for w, old in zip(node.workers, old_workers, strict=False):
            w.accepted, w.dropped, w.requests_total = old.accepted, old.dropped, old.requests_total
    http = conf.http
    old_sz = getattr(node, "server_zones", {})
    old_lz = getattr(node, "location_zones", {})
    old_upstreams = getattr(node, "upstreams", {})
    node.server_zones = {}
    node.location_zones = {}
    node.upstreams = {}
    node.static_upstreams = {}
    node._implicit = {}
    node.router = Router(http.servers if http else ())
    server_zone_of: list[ServerZone | None] = []
    node._loc_zone = {}
    if http:
        for s in http.servers:
            zname = s.status_zone
            if zname:
                z = node.server_zones.get(zname) or old_sz.get(zname) or ServerZone(zname)
                node.server_zones[zname] = z
                server_zone_of.append(z)
            else:
                server_zone_of.append(None)
            for loc in _walk(s.locations):
                if loc.status_zone:
                    lz = node.location_zones.get(loc.status_zone) or old_lz.get(loc.status_zone)
                    lz = lz or LocationZone(loc.status_zone)
                    node.location_zones[loc.status_zone] = lz
        old_ups = {} if first else old_upstreams
        for uname, uconf in http.upstreams.items():
            up = reloaded_upstream(node, old_ups.get(uname), uconf,
                                   lambda uconf=uconf, uname=uname: Upstream(
                                       env, uconf, node.streams.get(f"{node.name}/upstream/{uname}/lb"),
                                       node.cluster.resolve_name))
            (node.upstreams if uconf.zone else node.static_upstreams)[uname] = up
    node.proxy = Proxy(node)
    build_keyvals(node, conf, keep=not first)
    build_limits_and_resolvers(node, conf, keep=not first)
    build_health_checks(node, conf)
    build_caches(node, conf, first)
    # the routing memo of this configuration: its router, zones, upstreams and caches
    node.routes = Routes(node.router, server_zone_of, node.location_zones, node.upstreams, node.static_upstreams,
                         node.caches)
    # stream side and zone_sync (sim.stream.side, sim.stream.zone_sync): a reload or restart
    # replaces them (zone_sync reconnects and exchanges snapshots); they run once the node has started
    old_stream, old_zone_sync = getattr(node, "stream", None), getattr(node, "zone_sync", None)
    node.stream = (StreamSide(node, conf.stream, None if first else old_stream, reloaded_upstream)
                   if conf.stream else None)
    node.zone_sync = ZoneSync.for_node(node)  # None without a stream server with `zone_sync`
    for old in (old_stream, old_zone_sync):
        if old is not None:
            old.stop()
    if getattr(node, "started_at", None) is not None and node.up:
        for part in (node.stream, node.zone_sync):
            if part is not None:
                part.start()
    stream_ups = node.stream.upstreams.values() if node.stream is not None else ()
    for up in [*node.upstreams.values(), *stream_ups]:
        up.reserve_memory = lambda name, server, up=up: node.shm.reserve_peer_memory(up, name, server)
    # `server ... resolve`: first resolution now, through the side's resolver (counted in its
    # status zone), then again whenever an answer expires; new addresses get health checks
    for up in node.upstreams.values():
        up.on_peer_added = lambda peer, up=up: node.server_added(up, peer)
        up.start_resolving(node.http_resolver, node.cluster.node_address)
    for up in stream_ups:
        up.on_peer_added = lambda peer, up=up, side=node.stream: side.server_added(up, peer)
        up.start_resolving(node.stream_resolver, node.cluster.node_address)
    node.events.append((env.now, "config", "loaded" if first else "reloaded"))


def reloaded_upstream(node: Any, old: Upstream | None, conf, build) -> Upstream:
    """The upstream ``conf`` names after a reload: ``old`` itself when it survives (its zone
    keeps name and size, the block and the servers are unchanged), else a new one from
    ``build()`` (ids from 0, counters from zero) that takes ``old``'s busy servers as zombies."""
    if old is not None and old.survives_reload(conf):
        old.carry_over(conf)
        return old
    up = build()
    if old is not None:
        up.take_zombies(old)
        if old.zone is not None and (old.zone != conf.zone or old.conf.zone_size != conf.zone_size):
            # the old zone's memory goes with it; a zone of another size is a new mapping
            for table in (node.shm.pools, node.shm.held, node.shm.reserved):
                table.pop(old.zone, None)
    return up


def build_caches(node: Any, conf: NginxConf, first: bool) -> None:
    """Cache zones: one per proxy_cache_path. Entries on disk outlive reloads and restarts."""
    old = getattr(node, "caches", {})
    node.caches = {}
    if not conf.http:
        return
    for name, cc in conf.http.cache_paths.items():
        z = old.get(name)
        if z is None:
            z = CacheZone(cc, node.env)
        elif first:  # a new process after a crash: the disk is still there
            z.restart()
        else:
            z.reload(cc)
        node.caches[name] = z


def build_health_checks(node: Any, conf: NginxConf) -> None:
    """One checker per (location with health_check, check); a reload replaces them."""
    previous: dict[str, bool] = {}
    for hc in getattr(node, "health_checkers", []):
        previous.update(hc.stop())
    node._hc_previous = previous or None
    node.hc_registry = HealthRegistry()
    node.health_checkers = []
    http = conf.http
    if not http:
        return
    for si, s in enumerate(http.servers):
        for li, loc in enumerate(_walk(s.locations)):
            if not loc.health_checks or loc.upstream is None:
                continue
            up = node.upstream_named(loc.upstream)
            for ci, hc in enumerate(loc.health_checks):
                match = http.matches.get(hc.match) if hc.match else None
                rng = node.streams.get(f"{node.name}/health/{si}/{li}/{ci}")
                node.health_checkers.append(
                    HealthChecker(node.env, node.name, up, hc, match, node.backend_of, node.network, rng,
                                  loc.proxy.connect_timeout_ms, loc.proxy.read_timeout_ms,
                                  kind="http", registry=node.hc_registry)
                )
    if getattr(node, "started_at", None) is not None and node.up:
        start_health_checks(node)


def start_background(node: Any) -> None:
    """What runs beside the requests starts (Node.start): health checks, stream side, zone_sync."""
    start_health_checks(node)
    for part in (node.stream, node.zone_sync):  # sim.stream.side, sim.stream.zone_sync
        if part is not None:
            part.start()


def stop_background(node: Any) -> None:
    """All of it stops when the process dies (Node.crash), and name resolution with it."""
    stop_resolving(node)
    for hc in node.health_checkers:
        hc.stop()
    node.health_checkers = []
    for part in (node.stream, node.zone_sync):  # sessions and zone_sync connections die with it
        if part is not None:
            part.stop()


def start_health_checks(node: Any) -> None:
    for hc in node.health_checkers:
        hc.start(node._hc_previous)


def stop_resolving(node: Any) -> None:
    stream = getattr(node, "stream", None)
    for up in [*getattr(node, "upstreams", {}).values(), *(stream.upstreams.values() if stream else ())]:
        up.stop_resolving()


def build_limits_and_resolvers(node: Any, conf: NginxConf, keep: bool) -> None:
    """limit_req/limit_conn zones and resolver status zones; a reload keeps unchanged zones."""
    old_req = getattr(node, "limit_reqs", {}) if keep else {}
    old_conn = getattr(node, "limit_conns", {}) if keep else {}
    old_sconn = getattr(node, "stream_limit_conns", {}) if keep else {}
    old_res = getattr(node, "resolvers", {}) if keep else {}
    limit_reqs: dict[str, LimitReqZone] = {}
    limit_conns: dict[str, LimitConnZone] = {}
    stream_limit_conns: dict[str, LimitConnZone] = {}
    resolvers: dict[str, ResolverZone] = {}
    node.limit_reqs = limit_reqs
    node.limit_conns = limit_conns
    node.stream_limit_conns = stream_limit_conns
    node.resolvers = resolvers
    node.http_resolver = None
    node.stream_resolver = None
    http, stream = conf.http, conf.stream
    if http:
        for name, zc in http.limit_req_zones.items():
            z = old_req.get(name)
            if _zone_kept(z, zc, "key"):
                z.conf = zc  # a new rate applies to the states the zone keeps
                z.rate = max(1, int(zc.rate_per_s * 1000 + 1e-9))
            else:
                # the node's clock stamps the changes zone_sync sends (`sync`)
                z = LimitReqZone(zc, clock=node.clock, node_name=node.name)
            limit_reqs[name] = z
        for name, czc in http.limit_conn_zones.items():
            cz = old_conn.get(name)
            limit_conns[name] = _keep_or(cz, czc, "key", LimitConnZone)
    if stream:
        for name, czc in stream.limit_conn_zones.items():
            cz = old_sconn.get(name)
            stream_limit_conns[name] = _keep_or(cz, czc, "key", LimitConnZone)
    for side, attr in ((http, "http_resolver"), (stream, "stream_resolver")):
        if side is None or not side.resolvers:
            continue
        rc = side.resolvers[0]
        zone = None
        if rc.status_zone:
            zone = resolvers.get(rc.status_zone) or old_res.get(rc.status_zone) or ResolverZone(rc.status_zone)
            resolvers[rc.status_zone] = zone
        setattr(node, attr, Resolver(rc, node.cluster.hosts, zone))


def build_keyvals(node: Any, conf: NginxConf, keep: bool) -> None:
    """Keyval zones of http and stream; a reload keeps zones that still exist (shared memory)."""
    old_http = getattr(node, "keyvals", {}) if keep else {}
    old_stream = getattr(node, "stream_keyvals", {}) if keep else {}
    state_dir = node.cluster.state_dir
    sdir = None if state_dir is None else state_dir / node.name
    keyvals: dict[str, KeyvalZone] = {}
    stream_keyvals: dict[str, KeyvalZone] = {}
    node.keyvals = keyvals
    node.stream_keyvals = stream_keyvals
    for side, old, target in (
        (conf.http, old_http, keyvals),
        (conf.stream, old_stream, stream_keyvals),
    ):
        if side is None:
            continue
        for name, kc in side.keyval_zones.items():
            z = old.get(name)
            if _zone_kept(z, kc, "type", "state"):
                z.conf = kc  # a new timeout or sync applies to the pairs the zone keeps
            else:
                z = KeyvalZone(kc, node.env, node.clock, node.name, sdir)
                if kc.state:
                    z.load_state()
            target[name] = z


def _zone_kept(zone: Any, conf: Any, *same: str) -> bool:
    """nginx reuses a shared memory zone across a reload when it keeps its name and size (the
    module's own check adds the fields in ``same``, e.g. limit_req's key); its contents stay."""
    return zone is not None and zone.conf.size == conf.size and all(
        getattr(zone.conf, f) == getattr(conf, f) for f in same
    )


def _keep_or(zone: Any, conf: Any, same: str, make) -> Any:
    if _zone_kept(zone, conf, same):
        zone.conf = conf
        return zone
    return make(conf)


def _walk(locs):
    for loc in locs:
        yield loc
        yield from _walk(loc.locations)
