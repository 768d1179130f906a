"""The node's routing memo: which server block and location serve a request, decided once.

nginx looks for the virtual server and then the location of every request. The model asks
:class:`sim.http.routing.Router` once per (host, port, listen address, URI) and configuration and
keeps the answer as a :class:`Route`, with the status zones to count in, whether limits apply,
and for a location that only proxies through a cache, what the cache fast path needs.
:class:`Routes` holds them for one configuration (each reload or restart makes a new one);
:meth:`sim.node.node.Node.handle` reads them for every request, and :meth:`Routes.route` makes
the route of a (host, port, listen address, URI) it has not seen.
"""

from __future__ import annotations

from typing import Any

from sim.http.cache import CacheNode, CacheZone
from sim.http.routing import Router
from sim.node.upstream_cache import DEFAULT_CACHE_KEY
from sim.upstream.upstream import Upstream
from sim.zones.status import LocationZone, ServerZone


class Route:
    """What the node decided for requests to one (host, port, listen address, URI), for the
    life of one configuration: the server block (``server``, an index, None when no server
    listens there) and its zone, the location (``loc``, None: 404) and its zone, whether
    limit_conn or limit_req apply (``limited``), and for a location that only proxies through
    a cache (:meth:`Routes.hit_plan`), the cache ``zone``, the ``upstream`` and the cache ``key``
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


class Routes:
    """The routes of one configuration, with what they are made from: its router, the status
    zone of each server block (by index), the location zones, upstreams and caches."""

    def __init__(self, router: Router, server_zone_of: list[ServerZone | None], location_zones: dict[str, LocationZone],
                 upstreams: dict[str, Upstream], static_upstreams: dict[str, Upstream],
                 caches: dict[str, CacheZone]) -> None:
        self.router = router
        self.server_zone_of = server_zone_of
        self.location_zones = location_zones
        self.upstreams = upstreams
        self.static_upstreams = static_upstreams
        self.caches = caches
        # what route found for (host, port, listen address, uri), and what hit_plan said for
        # id(location): for this configuration (whose locations live as long as it does, so
        # their ids are not reused), its router, and the caches and upstreams built with it
        self.memo: dict[tuple[str, int, str | None, str], Route] = {}
        self.last: dict[str, Route] = {}  # by URI, the route last used (see Node.handle)
        self.hit_plans: dict[int, tuple[CacheZone, Upstream] | None] = {}

    def route(self, host: str, port: int, listen_address: str | None, uri: str) -> Route:
        """The :class:`Route` of a request, remembered for the next one with the same host, port,
        listen address and URI: one lookup per request instead of the router's two memos, the
        zones' and the plan's, and the same key string each time, whose hash is kept."""
        router = self.router
        si = router.server_for(host, port, listen_address)
        loc = None if si is None else router.location_for(si, uri)
        plan: tuple[CacheZone, Upstream] | None = None
        lz: LocationZone | None = None
        if loc is not None:
            if id(loc) in self.hit_plans:
                plan = self.hit_plans[id(loc)]
            else:
                plan = self.hit_plans[id(loc)] = self.hit_plan(loc)
            if loc.status_zone:
                lz = self.location_zones[loc.status_zone]
        route = Route(si, loc, None if si is None else self.server_zone_of[si], lz, plan, host, port, listen_address, uri)
        if len(self.memo) < 50_000:
            self.memo[(host, port, listen_address, uri)] = route
        return route

    def hit_plan(self, loc) -> tuple[CacheZone, Upstream] | None:
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
        up = self.upstreams.get(loc.upstream) or self.static_upstreams.get(loc.upstream)
        zone = self.caches.get(proxy.cache)
        if up is None or zone is None:
            return None  # left to Node._dispatch, which fails as it always did
        return zone, up
