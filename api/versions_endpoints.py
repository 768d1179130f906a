"""The API versions NGINX Plus serves, the release each follows, and the endpoints of each.

:data:`VERSIONS`, the NGINX Plus release whose output each version's tables describe, and the
endpoint table: every (path template, method) with the versions that have it, its success
status, whether it accepts ``fields=``, the error codes it can answer and the schema of its
body; then the lists ``GET /api/N/``, ``/http/`` and ``/stream/`` return. Part of the contract
that :mod:`api.versions` presents as a whole (import it from there); standard library only.
"""

from __future__ import annotations

from typing import NamedTuple

VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
LATEST = VERSIONS[-1]


class Release(NamedTuple):
    """The NGINX Plus release whose output a version's tables describe."""

    nginx: str
    build: str


#: For each API version, the newest release of that version that the field tables follow.
#: v8 follows R28 (detailed ssl counters); v9 follows PLS.37 (``license.reporting.uuid``,
#: ``response_time_hist``).
RELEASES: dict[int, Release] = {
    1: Release("1.13.4", "nginx-plus-r13"),
    2: Release("1.13.7", "nginx-plus-r14"),
    3: Release("1.15.7", "nginx-plus-r17"),
    4: Release("1.15.10", "nginx-plus-r18"),
    5: Release("1.17.3", "nginx-plus-r19"),
    6: Release("1.19.10", "nginx-plus-r24"),
    7: Release("1.21.5", "nginx-plus-r26"),
    8: Release("1.23.4", "nginx-plus-r29"),
    9: Release("1.29.8", "nginx-plus-r37.0.0"),
}


# --------------------------------------------------------------------------------------------------
# Endpoints


class Endpoint(NamedTuple):
    """One (path template, method) of the API and the versions that have it."""

    path: str
    method: str
    operation_id: str
    first: int
    last: int | None  # None: still present in the newest version
    success: int
    fields: bool  # accepts the ``fields`` query argument
    errors: tuple[str, ...]  # codes it can answer, over all its versions (see endpoint_errors)
    body: str | None  # ``$defs`` name of the success body in api/schemas/vN.json; None: no body
    query: tuple[str, ...] = ()  # other query arguments

    def exists_in(self, version: int) -> bool:
        return self.first <= version and (self.last is None or version <= self.last)


def _ep(path, method, operation_id, first, last, success, fields, errors, body=None, query=()):
    return Endpoint(path, method, operation_id, first, last, success, fields, tuple(errors), body, query)


# Error lists below follow the spec's (by HTTP status); StreamNotConfigured on every /stream/ path
# and MethodDisabled on every modifying method are behaviour, whether or not a revision listed them.
_UPSTREAM_POST_400 = (
    "UpstreamStatic", "UpstreamConfFormatError", "UpstreamBadAddress", "UpstreamBadWeight",
    "UpstreamBadMaxConns", "UpstreamBadMaxFails", "UpstreamBadFailTimeout", "UpstreamBadSlowStart",
    "UpstreamBadRoute", "UpstreamBadService", "UpstreamConfNoResolver", "UpstreamNoBackup",
    "UpstreamOutOfMemory", "BodyReadError",
)
_UPSTREAM_PATCH_400 = (
    "UpstreamStatic", "UpstreamConfFormatError", "UpstreamBadAddress", "UpstreamBadServerId",
    "UpstreamBadWeight", "UpstreamBadMaxConns", "UpstreamBadMaxFails", "UpstreamBadFailTimeout",
    "UpstreamBadSlowStart", "UpstreamBadRoute", "UpstreamBadService", "UpstreamServerImmutable",
    "UpstreamServerWeightImmutable", "UpstreamOutOfMemory", "BodyReadError",
)
_STREAM_POST_400 = tuple(c for c in _UPSTREAM_POST_400 if c != "UpstreamBadRoute")
_STREAM_PATCH_400 = tuple(c for c in _UPSTREAM_PATCH_400 if c != "UpstreamBadRoute")
_UV = ("UnknownVersion",)
_MD = ("MethodDisabled",)
_SNC = ("StreamNotConfigured",)

ENDPOINTS: tuple[Endpoint, ...] = (
    _ep("/", "GET", "getAPIEndpoints", 1, None, 200, False, _UV, "root_endpoints"),
    _ep("/nginx", "GET", "getNginx", 1, None, 200, True, _UV, "nginx"),
    _ep("/processes", "GET", "getProcesses", 1, None, 200, False, _UV, "processes"),
    _ep("/processes", "DELETE", "deleteProcesses", 1, None, 204, False, _UV + _MD),
    _ep("/connections", "GET", "getConnections", 1, None, 200, True, _UV, "connections"),
    _ep("/connections", "DELETE", "deleteConnections", 1, None, 204, False, _UV + _MD),
    _ep("/slabs/", "GET", "getSlabs", 1, None, 200, True, _UV, "slabs"),
    _ep("/slabs/{zone}", "GET", "getSlabZone", 1, None, 200, True, ("SlabNotFound", *_UV), "slab"),
    _ep("/slabs/{zone}", "DELETE", "deleteSlabZoneStats", 1, None, 204, False, ("SlabNotFound", *_UV, *_MD)),
    _ep("/http/", "GET", "getHttp", 1, None, 200, False, _UV, "http_endpoints"),
    _ep("/http/requests", "GET", "getHttpRequests", 1, None, 200, True, _UV, "http_requests"),
    _ep("/http/requests", "DELETE", "deleteHttpRequests", 1, None, 204, False, _UV + _MD),
    _ep("/http/server_zones/", "GET", "getHttpServerZones", 1, None, 200, True, _UV, "http_server_zones"),
    _ep("/http/server_zones/{zone}", "GET", "getHttpServerZone", 1, None, 200, True,
        ("ServerZoneNotFound", *_UV), "http_server_zone"),
    _ep("/http/server_zones/{zone}", "DELETE", "deleteHttpServerZoneStat", 1, None, 204, False,
        ("ServerZoneNotFound", *_UV, *_MD)),
    _ep("/http/location_zones/", "GET", "getHttpLocationZones", 5, None, 200, True, _UV,
        "http_location_zones"),
    _ep("/http/location_zones/{zone}", "GET", "getHttpLocationZone", 5, None, 200, True,
        ("LocationZoneNotFound", *_UV), "http_location_zone"),
    _ep("/http/location_zones/{zone}", "DELETE", "deleteHttpLocationZoneStat", 5, None, 204, False,
        ("LocationZoneNotFound", *_UV, *_MD)),
    _ep("/http/caches/", "GET", "getHttpCaches", 1, None, 200, True, _UV, "http_caches"),
    _ep("/http/caches/{zone}", "GET", "getHttpCacheZone", 1, None, 200, True, ("CacheNotFound", *_UV),
        "http_cache"),
    _ep("/http/caches/{zone}", "DELETE", "deleteHttpCacheZoneStat", 1, None, 204, False,
        ("CacheNotFound", *_UV, *_MD)),
    _ep("/http/limit_conns/", "GET", "getHttpLimitConnZones", 6, None, 200, True, _UV, "http_limit_conns"),
    _ep("/http/limit_conns/{zone}", "GET", "getHttpLimitConnZone", 6, None, 200, True,
        ("LimitConnNotFound", *_UV), "limit_conn"),
    _ep("/http/limit_conns/{zone}", "DELETE", "deleteHttpLimitConnZoneStat", 6, None, 204, False,
        ("LimitConnNotFound", *_UV, *_MD)),
    _ep("/http/limit_reqs/", "GET", "getHttpLimitReqZones", 6, None, 200, True, _UV, "http_limit_reqs"),
    _ep("/http/limit_reqs/{zone}", "GET", "getHttpLimitReqZone", 6, None, 200, True,
        ("LimitReqNotFound", *_UV), "limit_req"),
    _ep("/http/limit_reqs/{zone}", "DELETE", "deleteHttpLimitReqZoneStat", 6, None, 204, False,
        ("LimitReqNotFound", *_UV, *_MD)),
    _ep("/http/upstreams/", "GET", "getHttpUpstreams", 1, None, 200, True, _UV, "http_upstreams"),
    _ep("/http/upstreams/{upstream}/", "GET", "getHttpUpstreamName", 1, None, 200, True,
        ("UpstreamStatic", "UpstreamNotFound", *_UV), "http_upstream"),
    _ep("/http/upstreams/{upstream}/", "DELETE", "deleteHttpUpstreamStat", 1, None, 204, False,
        ("UpstreamStatic", "UpstreamNotFound", *_UV, *_MD)),
    _ep("/http/upstreams/{upstream}/servers/", "GET", "getHttpUpstreamServers", 1, None, 200, False,
        ("UpstreamStatic", "UpstreamNotFound", *_UV), "http_upstream_conf_servers"),
    _ep("/http/upstreams/{upstream}/servers/", "POST", "postHttpUpstreamServer", 1, None, 201, False,
        (*_UPSTREAM_POST_400, "UpstreamNotFound", *_UV, *_MD, "EntryExists", "JsonError"),
        "http_upstream_conf_server"),
    _ep("/http/upstreams/{upstream}/servers/{server_id}", "GET", "getHttpUpstreamPeer", 1, None, 200, False,
        ("UpstreamStatic", "UpstreamBadServerId", "UpstreamNotFound", "UpstreamServerNotFound", *_UV),
        "http_upstream_conf_server"),
    _ep("/http/upstreams/{upstream}/servers/{server_id}", "PATCH", "patchHttpUpstreamPeer", 1, None, 200,
        False,
        (*_UPSTREAM_PATCH_400, "UpstreamNotFound", "UpstreamServerNotFound", *_UV, *_MD, "JsonError"),
        "http_upstream_conf_server"),
    _ep("/http/upstreams/{upstream}/servers/{server_id}", "DELETE", "deleteHttpUpstreamServer", 1, None, 200,
        False, ("UpstreamStatic", "UpstreamBadServerId", "UpstreamServerImmutable", "UpstreamNotFound",
                "UpstreamServerNotFound", *_UV, *_MD), "http_upstream_conf_servers"),
    _ep("/http/keyvals/", "GET", "getHttpKeyvalZones", 1, None, 200, True, _UV, "keyval_zones"),
    _ep("/http/keyvals/{zone}", "GET", "getHttpKeyvalZoneKeysValues", 1, None, 200, False,
        ("KeyvalNotFound", "KeyvalKeyNotFound", *_UV), "keyval_zone", ("key",)),
    _ep("/http/keyvals/{zone}", "POST", "postHttpKeyvalZoneData", 1, None, 201, False,
        ("KeyvalFormatError", "BodyReadError", "KeyvalNotFound", *_UV, *_MD, "KeyvalKeyExists", "EntryExists",
         "RequestEntityTooLarge", "JsonError")),
    _ep("/http/keyvals/{zone}", "PATCH", "patchHttpKeyvalZoneKeyValue", 1, None, 204, False,
        ("KeyvalFormatError", "BodyReadError", "KeyvalNotFound", "KeyvalKeyNotFound", *_UV, *_MD,
         "RequestEntityTooLarge", "JsonError")),
    _ep("/http/keyvals/{zone}", "DELETE", "deleteHttpKeyvalZoneData", 1, None, 204, False,
        ("KeyvalNotFound", *_UV, *_MD)),
    _ep("/stream/", "GET", "getStream", 1, None, 200, False, _SNC + _UV, "stream_endpoints"),
    _ep("/stream/server_zones/", "GET", "getStreamServerZones", 1, None, 200, True, _SNC + _UV,
        "stream_server_zones"),
    _ep("/stream/server_zones/{zone}", "GET", "getStreamServerZone", 1, None, 200, True,
        ("ServerZoneNotFound", *_SNC, *_UV), "stream_server_zone"),
    _ep("/stream/server_zones/{zone}", "DELETE", "deleteStreamServerZoneStat", 1, None, 204, False,
        ("ServerZoneNotFound", *_SNC, *_UV, *_MD)),
    _ep("/stream/limit_conns/", "GET", "getStreamLimitConnZones", 6, None, 200, True, _SNC + _UV,
        "stream_limit_conns"),
    _ep("/stream/limit_conns/{zone}", "GET", "getStreamLimitConnZone", 6, None, 200, True,
        ("LimitConnNotFound", *_SNC, *_UV), "limit_conn"),
    _ep("/stream/limit_conns/{zone}", "DELETE", "deleteStreamLimitConnZoneStat", 6, None, 204, False,
        ("LimitConnNotFound", *_SNC, *_UV, *_MD)),
    _ep("/stream/upstreams/", "GET", "getStreamUpstreams", 1, None, 200, True, _SNC + _UV,
        "stream_upstreams"),
    _ep("/stream/upstreams/{upstream}/", "GET", "getStreamUpstream", 1, None, 200, True,
        ("UpstreamStatic", "UpstreamNotFound", *_SNC, *_UV), "stream_upstream"),
    _ep("/stream/upstreams/{upstream}/", "DELETE", "deleteStreamUpstreamStat", 1, None, 204, False,
        ("UpstreamStatic", "UpstreamNotFound", *_SNC, *_UV, *_MD)),
    _ep("/stream/upstreams/{upstream}/servers/", "GET", "getStreamUpstreamServers", 1, None, 200, False,
        ("UpstreamStatic", "UpstreamNotFound", *_SNC, *_UV), "stream_upstream_conf_servers"),
    _ep("/stream/upstreams/{upstream}/servers/", "POST", "postStreamUpstreamServer", 1, None, 201, False,
        (*_STREAM_POST_400, "UpstreamNotFound", *_SNC, *_UV, *_MD, "EntryExists", "JsonError"),
        "stream_upstream_conf_server"),
    _ep("/stream/upstreams/{upstream}/servers/{server_id}", "GET", "getStreamUpstreamServer", 1, None, 200,
        False, ("UpstreamStatic", "UpstreamBadServerId", "UpstreamNotFound", "UpstreamServerNotFound", *_SNC,
                *_UV), "stream_upstream_conf_server"),
    _ep("/stream/upstreams/{upstream}/servers/{server_id}", "PATCH", "patchStreamUpstreamServer", 1, None,
        200,
        False, (*_STREAM_PATCH_400, "UpstreamNotFound", "UpstreamServerNotFound", *_SNC, *_UV, *_MD,
                "JsonError"), "stream_upstream_conf_server"),
    _ep("/stream/upstreams/{upstream}/servers/{server_id}", "DELETE", "deleteStreamUpstreamServer", 1, None,
        200, False, ("UpstreamStatic", "UpstreamBadServerId", "UpstreamServerImmutable", "UpstreamNotFound",
                     "UpstreamServerNotFound", *_SNC, *_UV, *_MD), "stream_upstream_conf_servers"),
    _ep("/stream/keyvals/", "GET", "getStreamKeyvalZones", 2, None, 200, True, _SNC + _UV, "keyval_zones"),
    _ep("/stream/keyvals/{zone}", "GET", "getStreamKeyvalZoneKeysValues", 2, None, 200, False,
        ("KeyvalNotFound", "KeyvalKeyNotFound", *_SNC, *_UV), "keyval_zone", ("key",)),
    _ep("/stream/keyvals/{zone}", "POST", "postStreamKeyvalZoneData", 2, None, 201, False,
        ("KeyvalFormatError", "BodyReadError", "KeyvalNotFound", *_SNC, *_UV, *_MD, "KeyvalKeyExists",
         "EntryExists", "RequestEntityTooLarge", "JsonError")),
    _ep("/stream/keyvals/{zone}", "PATCH", "patchStreamKeyvalZoneKeyValue", 2, None, 204, False,
        ("KeyvalFormatError", "BodyReadError", "KeyvalNotFound", "KeyvalKeyNotFound", *_SNC, *_UV, *_MD,
         "RequestEntityTooLarge", "JsonError")),
    _ep("/stream/keyvals/{zone}", "DELETE", "deleteStreamKeyvalZoneData", 2, None, 204, False,
        ("KeyvalNotFound", *_SNC, *_UV, *_MD)),
    _ep("/stream/zone_sync/", "GET", "getStreamZoneSync", 3, None, 200, False,
        ("ZoneSyncNotConfigured", *_SNC, *_UV), "zone_sync"),
    _ep("/resolvers/", "GET", "getResolverZones", 5, None, 200, True, _UV, "resolvers"),
    _ep("/resolvers/{zone}", "GET", "getResolverZone", 5, None, 200, True, ("ResolverZoneNotFound", *_UV),
        "resolver_zone"),
    _ep("/resolvers/{zone}", "DELETE", "deleteResolverZoneStat", 5, None, 204, False,
        ("ResolverZoneNotFound", *_UV, *_MD)),
    _ep("/ssl", "GET", "getSsl", 1, None, 200, True, _UV, "ssl"),
    _ep("/ssl", "DELETE", "deleteSslStat", 1, None, 204, False, _UV + _MD),
    _ep("/workers/", "GET", "getWorkers", 9, None, 200, True, ("WorkerNotFound", *_UV), "workers"),
    _ep("/workers/", "DELETE", "deleteWorkersStat", 9, None, 204, False, ("WorkerNotFound", *_UV, *_MD)),
    _ep("/workers/{worker_id}", "GET", "getWorker", 9, None, 200, True, ("WorkerNotFound", *_UV), "worker"),
    _ep("/workers/{worker_id}", "DELETE", "deleteWorkerStat", 9, None, 204, False,
        ("WorkerNotFound", *_UV, *_MD)),
    _ep("/license", "GET", "getLicense", 9, None, 200, False, _UV, "license"),
)


_BY_KEY = {(ep.path, ep.method): ep for ep in ENDPOINTS}


def endpoints_for(version: int) -> list[Endpoint]:
    """Every endpoint that exists in ``version``, in the order of ENDPOINTS."""
    _check_version(version)
    return [ep for ep in ENDPOINTS if ep.exists_in(version)]


def find_endpoint(version: int, method: str, path: str) -> Endpoint | None:
    """The endpoint with this exact path template and method in ``version``, if any."""
    ep = _BY_KEY.get((path, method))
    return ep if ep is not None and ep.exists_in(version) else None


def methods_for(version: int, path: str) -> tuple[str, ...]:
    """The methods a path template answers in ``version`` (empty if the path does not exist)."""
    return tuple(ep.method for ep in ENDPOINTS if ep.path == path and ep.exists_in(version))


def root_entries(
    version: int, has_stream: bool = True, *, has_resolvers: bool = True, has_license: bool = True
) -> list[str]:
    """The list ``GET /api/N/`` returns: nginx's order, ``stream`` only with a ``stream {}`` block.

    ``license`` (R33+) is placed last, after ``workers``; nginx's real position is unknown.
    """
    _check_version(version)
    entries = ["nginx", "processes", "connections", "slabs", "http"]
    if has_stream:
        entries.append("stream")
    if version >= 5 and has_resolvers:
        entries.append("resolvers")
    entries.append("ssl")
    if version >= 9:
        entries.append("workers")
        if has_license:
            entries.append("license")
    return entries


def http_entries(version: int) -> list[str]:
    """The list ``GET /api/N/http/`` returns (always complete, configured or not)."""
    _check_version(version)
    entries = ["requests", "server_zones"]
    if version >= 5:
        entries.append("location_zones")
    entries.append("caches")
    if version >= 6:
        entries += ["limit_conns", "limit_reqs"]
    return entries + ["keyvals", "upstreams"]


def stream_entries(version: int, has_zone_sync: bool = True) -> list[str]:
    """The list ``GET /api/N/stream/`` returns; ``zone_sync`` only where it is configured (v3+)."""
    _check_version(version)
    entries = ["server_zones"]
    if version >= 6:
        entries.append("limit_conns")
    if version >= 2:
        entries.append("keyvals")
    if version >= 3 and has_zone_sync:
        entries.append("zone_sync")
    return entries + ["upstreams"]


def _check_version(version: int) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown API version {version!r}")
