"""Pure renderers: model objects -> the NGINX Plus REST API's JSON objects, version by version.

Each function takes a model object (or the node) and an API version and returns a plain dict (or
list) with nginx's field names, in the order real nginx writes them, with the fields that exist
in that version and appear only when they apply (``api/versions.py`` lists them). Nothing here
touches HTTP: the routers call these functions and encode the result, the run summary calls
:func:`node_state`, and tests call them directly. Units follow nginx: byte and request counters
are integers, durations in milliseconds as integers, instants as ISO 8601 strings from the
node's clock (``selected`` at second resolution, as real output shows).

This module holds the node-wide objects, the status zones, keyvals, zone_sync, the error object
and :func:`node_state`; two siblings hold the rest, and everything is reachable from here as
before: :mod:`api.render_upstream` the upstreams (peers, :class:`UpstreamBodies`, which keeps
encoded upstream objects and reuses them while the model has not changed them, and the
``.../servers/`` objects), :mod:`api.render_common` what several objects share (``responses``,
``ssl``, the ``fields`` filter) and the ``where the model keeps it`` helpers (``caches``,
``stream_server_zones``, ``slab_pools`` ...), the one place that knows where a node holds each
collection.
"""

from __future__ import annotations

import uuid

from . import versions as V

# Everything the two siblings render stays reachable as ``render.<name>``, as before the split.
from .render_common import (  # noqa: F401
    caches,
    codes_dict,
    filter_fields,
    filter_members,
    has_stream,
    has_zone_sync,
    limit_conns,
    limit_reqs,
    resolvers,
    responses,
    slab_pools,
    ssl,
    stream_limit_conns,
    stream_server_zones,
    stream_static_upstreams,
    stream_upstreams,
    tls_server_zones,
    tls_stream_server_zones,
)
from .render_upstream import (  # noqa: F401
    UpstreamBodies,
    _hist_buckets,
    conf_server,
    conf_servers,
    peer,
    stream_peer,
    stream_upstream,
    stream_upstreams_of,
    upstream,
    upstreams,
)

LATEST = V.LATEST


# --------------------------------------------------------------------------------------------------
# Lists of names


def versions_list(served) -> list[int]:
    """``GET /api/``: the API versions this node serves."""
    return list(served)


def root_entries(node, version: int) -> list[str]:
    """``GET /api/N/``."""
    return V.root_entries(version, has_stream(node))


def http_entries(node, version: int) -> list[str]:
    """``GET /api/N/http/``."""
    return V.http_entries(version)


def stream_entries(node, version: int) -> list[str]:
    """``GET /api/N/stream/``."""
    return V.stream_entries(version, has_zone_sync(node))


# --------------------------------------------------------------------------------------------------
# Node-wide objects


def nginx(node, version: int, pid: int | None = None) -> dict:
    """``/nginx``; ``pid`` is the worker that handled the request (the first worker by default)."""
    if pid is None:
        pid = node.workers[0].pid if node.workers else node.ppid
    clock = node.clock
    return {
        "version": node.version,
        "build": node.build,
        "address": node.address,
        "generation": node.generation,
        "load_timestamp": clock.iso_at(node.load_time),
        "timestamp": clock.iso(),
        "pid": pid,
        "ppid": node.ppid,
    }


def processes(node, version: int) -> dict:
    return {"respawned": node.respawned}


def connections(node, version: int) -> dict:
    return {
        "accepted": node.connections_accepted,
        "dropped": node.connections_dropped,
        "active": node.connections_active,
        "idle": node.connections_idle,
    }


def http_requests(node, version: int) -> dict:
    return {"total": node.requests_total, "current": node.requests_current}


def slab(pool, version: int) -> dict:
    """``/slabs/{zone}`` from a :class:`sim.zones.slabs.SlabPool`."""
    return pool.stats()


def slabs(node, version: int) -> dict:
    return {name: slab(pool, version) for name, pool in slab_pools(node).items()}


def worker(w, version: int) -> dict:
    """``/workers/{id}`` (API 9)."""
    return {
        "id": w.id,
        "pid": w.pid,
        "connections": {"accepted": w.accepted, "dropped": w.dropped, "active": w.active, "idle": w.idle},
        "http": {"requests": {"total": w.requests_total, "current": w.requests_current}},
    }


def workers(node, version: int) -> list[dict]:
    """``/workers/``: a JSON array, as real nginx and its clients have it (the spec says a map)."""
    return [worker(w, version) for w in node.workers]


#: Simulated licence terms (docs/api-server.md): a one-year subscription from the run's epoch.
LICENSE_TERM_S = 365 * 86_400
LICENSE_GRACE_S = 180 * 86_400


def license(node, version: int) -> dict:
    """``/license`` (API 9): simulated values, see docs/api-server.md."""
    epoch_s = int(node.clock.epoch_ms // 1000)
    return {
        "eval": False,
        "active_till": epoch_s + LICENSE_TERM_S,
        "reporting": {
            "healthy": True,
            "fails": 0,
            "grace": LICENSE_GRACE_S,
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node.name}.clustersim.invalid")),
        },
    }


# --------------------------------------------------------------------------------------------------
# http zones


def server_zone(zone, version: int, tls: bool = False) -> dict:
    """``/http/server_zones/{zone}``; ``tls``: a server sharing the zone has an ``ssl`` listener."""
    out = {
        "processing": zone.processing,
        "requests": zone.requests,
        "responses": responses(zone.responses, zone.codes, version),
        "discarded": zone.discarded,
        "received": zone.received,
        "sent": zone.sent,
    }
    if tls and version >= 8:
        out["ssl"] = ssl(zone.ssl, version, "zone")
    return out


def server_zones(node, version: int) -> dict:
    tls = tls_server_zones(node)
    return {name: server_zone(z, version, name in tls) for name, z in node.server_zones.items()}


def location_zone(zone, version: int) -> dict:
    """``/http/location_zones/{zone}`` (API 5+)."""
    return {
        "requests": zone.requests,
        "responses": responses(zone.responses, zone.codes, version),
        "discarded": zone.discarded,
        "received": zone.received,
        "sent": zone.sent,
    }


def location_zones(node, version: int) -> dict:
    return {name: location_zone(z, version) for name, z in node.location_zones.items()}


def cache(zone, version: int) -> dict:
    """``/http/caches/{zone}``: ``max_size`` only when the cache path sets one."""
    out = {"size": zone.size}
    if zone.max_size is not None:
        out["max_size"] = zone.max_size
    out["cold"] = bool(zone.cold)
    for name, block in zone.stats.items():
        out[name] = dict(block)
    return out


def caches_of(node, version: int) -> dict:
    return {name: cache(z, version) for name, z in caches(node).items()}


def limit_req(zone, version: int) -> dict:
    """``/http/limit_reqs/{zone}`` (API 6+)."""
    return {
        "passed": zone.passed,
        "delayed": zone.delayed,
        "rejected": zone.rejected,
        "delayed_dry_run": zone.delayed_dry_run,
        "rejected_dry_run": zone.rejected_dry_run,
    }


def limit_conn(zone, version: int) -> dict:
    """``/http/limit_conns/{zone}`` and ``/stream/limit_conns/{zone}`` (API 6+)."""
    return {"passed": zone.passed, "rejected": zone.rejected, "rejected_dry_run": zone.rejected_dry_run}


def resolver(zone, version: int) -> dict:
    """``/resolvers/{zone}`` (API 5+)."""
    return {"requests": dict(zone.requests), "responses": dict(zone.responses)}


# --------------------------------------------------------------------------------------------------
# Keyvals, stream zones, zone_sync


def keyval_zone(zone, version: int, key: str | None = None) -> dict:
    """``/http/keyvals/{zone}``: every pair, or ``{key: value}`` (KeyvalKeyNotFound if absent)."""
    return zone.get(key)


def keyval_zones(zones: dict, version: int, fields: str | None = None) -> dict:
    """``/http/keyvals/``; only an empty ``fields`` means something: zone names with ``{}``."""
    if fields == "":
        return {name: {} for name in zones}
    return {name: z.get() for name, z in zones.items()}


def stream_server_zone(zone, version: int, tls: bool = False) -> dict:
    """``/stream/server_zones/{zone}``."""
    sessions = dict(zone.sessions)
    sessions["total"] = sum(zone.sessions.values())
    out = {
        "processing": zone.processing,
        "connections": zone.connections,
        "sessions": sessions,
        "discarded": zone.discarded,
        "received": zone.received,
        "sent": zone.sent,
    }
    if tls and version >= 8:
        out["ssl"] = ssl(zone.ssl, version, "zone")
    return out


def stream_server_zones_of(node, version: int) -> dict:
    tls = tls_stream_server_zones(node)
    zones = stream_server_zones(node)
    return {name: stream_server_zone(z, version, name in tls) for name, z in zones.items()}


_SYNC_STATUS = ("bytes_in", "msgs_in", "msgs_out", "bytes_out", "nodes_online")


def zone_sync(node, version: int) -> dict:
    """``/stream/zone_sync/`` (API 3+): per synced zone its queue and size, then the node's counters."""
    zs = node.zone_sync
    zones = {
        name: {"records_pending": z.records_pending, "records_total": z.records_total}
        for name, z in zs.zones.items()
    }
    status = {name: getattr(zs, name) for name in _SYNC_STATUS}
    return {"zones": zones, "status": status}


# --------------------------------------------------------------------------------------------------
# Errors


def error(version: int, status: int, code: str, text: str, request_id: str, path: str = "",
          method: str = "") -> dict:
    """The NGINX error object; ``path`` and ``method`` exist only in API 1-3."""
    out: dict = {}
    if version <= 3:
        out["path"] = path
        out["method"] = method
    out["error"] = {"status": status, "text": text, "code": code}
    out["request_id"] = request_id
    out["href"] = V.ERROR_HREF
    return out


# --------------------------------------------------------------------------------------------------
# The whole node


def node_state(node, version: int = LATEST) -> dict:
    """Every GET-able object of ``node`` in API ``version`` shape, for run summaries and reports.

    Keys follow ``GET /api/N/`` (and ``/http/``, ``/stream/``): ``stream`` only with a ``stream {}``
    block, ``zone_sync`` only where configured, and nothing a version lacks (location zones before
    5, limits before 6, workers before 9 ...). Pure: nothing is counted, nothing changes.
    """
    parts = {
        "nginx": lambda: nginx(node, version),
        "processes": lambda: processes(node, version),
        "connections": lambda: connections(node, version),
        "slabs": lambda: slabs(node, version),
        "http": lambda: {name: http_parts[name]() for name in http_entries(node, version)},
        "stream": lambda: {name: stream_parts[name]() for name in stream_entries(node, version)},
        "resolvers": lambda: {n: resolver(z, version) for n, z in resolvers(node).items()},
        "ssl": lambda: ssl(node.ssl, version),
        "workers": lambda: workers(node, version),
        "license": lambda: license(node, version),
    }
    http_parts = {
        "requests": lambda: http_requests(node, version),
        "server_zones": lambda: server_zones(node, version),
        "location_zones": lambda: location_zones(node, version),
        "caches": lambda: caches_of(node, version),
        "limit_conns": lambda: {n: limit_conn(z, version) for n, z in limit_conns(node).items()},
        "limit_reqs": lambda: {n: limit_req(z, version) for n, z in limit_reqs(node).items()},
        "keyvals": lambda: keyval_zones(node.keyvals, version),
        "upstreams": lambda: upstreams(node, version),
    }
    stream_parts = {
        "server_zones": lambda: stream_server_zones_of(node, version),
        "limit_conns": lambda: {n: limit_conn(z, version) for n, z in stream_limit_conns(node).items()},
        "keyvals": lambda: keyval_zones(node.stream_keyvals, version),
        "zone_sync": lambda: zone_sync(node, version),
        "upstreams": lambda: stream_upstreams_of(node, version),
    }
    return {name: parts[name]() for name in root_entries(node, version)}
