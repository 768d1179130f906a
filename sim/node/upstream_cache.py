"""The proxy cache's share of a node's request path, the part ``ngx_http_upstream_cache`` plays.

The node (:class:`sim.node.node.Node`) looks a request to a location with ``proxy_cache`` up
in its cache zone and acts on the answer; what it decides with here is the request's key in the
zone, or that ``proxy_cache_bypass`` sends it past the cache (:func:`lookup_key`), the
background subrequest that refreshes a stale entry for ``proxy_cache_background_update``
(:func:`background_request`), and, once the upstream has answered or failed, the counting and
storing of the response and what the client gets (:func:`cache_finish`). All of it runs per
request.
"""

from __future__ import annotations

from typing import Any

from sim.http import cache as cache_mod
from sim.http.cache import CacheZone
from sim.http.traffic import Request
from sim.node.variables import cache_vars

DEFAULT_CACHE_KEY = "$scheme$proxy_host$request_uri"


def lookup_key(req: Request, proxy: Any) -> str | None:
    """The key of ``req`` in the cache of its location (whose proxy settings are ``proxy``), or
    None when ``proxy_cache_bypass`` says to fetch it from the upstream (``req`` is marked so)."""
    if proxy.cache_key == DEFAULT_CACHE_KEY and not proxy.cache_bypass and not proxy.no_cache:
        # the common case, without building the variables: $scheme$proxy_host$request_uri
        return "http" + req.upstream.name + req.uri
    vars = cache_vars(req)
    req.vars = vars
    if proxy.cache_bypass and cache_mod.evaluate_bypass(proxy.cache_bypass, vars):
        req.cache_status = cache_mod.CacheStatus.BYPASS
        req.cache_key = cache_mod.cache_key(proxy.cache_key, vars)
        return None
    return cache_mod.cache_key(proxy.cache_key, vars)


def background_request(node: Any, req: Request, lk: Any, entry: Any, incarnation: int, now: Any) -> Request:
    """STALE from proxy_cache_background_update: ``req`` holds the update mark of the lookup
    ``lk``, so a background subrequest (no client connection: it answers nobody) fetches the
    key as EXPIRED, is counted under its own status, and releases the mark."""
    bg = Request(node, req.uri, req.host, req.client_ip, req.req_bytes, None, req.method)
    bg.loc, bg.server, bg.upstream, bg.vars = req.loc, req.server, req.upstream, req.vars
    bg.incarnation = incarnation
    bg.t0 = now
    bg.cache_status = cache_mod.CacheStatus.EXPIRED
    bg.cache_key = lk
    bg.cache_entry = entry if lk.proxy.cache_revalidate else None
    return bg


def cache_finish(req: Request, zone: CacheZone, backend: Any, now: Any, status: int, nbytes: int,
                 failure: str | None) -> tuple[int, int]:
    """The upstream answered (or failed: ``failure``) for a location cached in ``zone``, from
    ``backend`` (None when no attempt reached one): count, store, and decide what the client
    gets (a stale or revalidated entry may replace the upstream's answer)."""
    S = cache_mod.CacheStatus
    proxy = req.loc.proxy
    lk = req.cache_key if req.cache_status != S.BYPASS else None
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
                    and not (proxy.no_cache and cache_mod.evaluate_bypass(proxy.no_cache, req.vars or cache_vars(req)))):
                key = lk.key if lk is not None else cache_mod.cache_key(proxy.cache_key, req.vars or cache_vars(req))
                version = backend.content_version(req.uri, now) if backend is not None else None
                written = zone.store(key, status, nbytes, now, valid, version)
        assert req.cache_status is not None  # the callers check it
        zone.count(req.cache_status, nbytes, written)
        return status, nbytes
    finally:
        if lk is not None:
            zone.release(lk)
