"""The NGINX Plus REST API contract, version by version, as plain data.

NGINX Plus serves API versions 1..9 side by side under its ``api`` location (``/api/N/...``); a
later version adds endpoints and fields, and in one case (v4) removes fields. This module says, for
each version, which endpoints exist (path template, method, success status, whether ``fields=`` is
accepted, which error codes they can answer), which error codes exist and what they say, and which
top-level fields every response object has, in the order nginx writes them, with the fields that
appear only when they apply. ``api/schemas/vN.json`` holds the JSON Schema of every response body of
version N; ``load_schema`` reads it.

Facts come from the official OpenAPI files of every API revision and real captured responses; where
those are silent the choice made here is recorded in ``docs/api.md``. This module imports only the
standard library so that tests, load-test checkers and the renderer can all share it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import NamedTuple

VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
LATEST = VERSIONS[-1]

#: The ``href`` of every error object.
ERROR_HREF = "https://nginx.org/en/docs/http/ngx_http_api_module.html"

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


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


# --------------------------------------------------------------------------------------------------
# Errors


class ErrorText(NamedTuple):
    """One wording of an error, with the versions that use it; ``{name}`` marks a value to fill in."""

    text: str
    first: int = 1
    last: int | None = None


class ApiError(NamedTuple):
    """An error code: its HTTP status, its default text, and the versions that have it."""

    status: int
    text: str
    documented: tuple[int, int] | None  # (first, last) version listing it in the spec; None: not in it
    versions: tuple[int, int]  # (first, last) version in which clustersim answers it
    texts: tuple[ErrorText, ...] = ()  # every wording, the default first

    def in_version(self, version: int) -> bool:
        return self.versions[0] <= version <= self.versions[1]


def _err(status, text, documented=(1, LATEST), versions=None, more=()):
    texts = (ErrorText(text), *(ErrorText(*m) if isinstance(m, tuple) else ErrorText(m) for m in more))
    return ApiError(status, text, documented, versions or documented or (1, LATEST), texts)


_ALL = (1, LATEST)

ERRORS: dict[str, ApiError] = {
    # general
    "UnknownVersion": _err(404, "unknown version", (6, LATEST), _ALL),
    "PathNotFound": _err(404, "path not found", None, _ALL),
    "MethodNotSupported": _err(405, "method not supported", None, _ALL),
    "MethodDisabled": _err(405, "method disabled"),
    "JsonError": _err(415, "json error"),
    "BodyReadError": _err(400, "reading request body failed", (6, LATEST)),
    "EntryExists": _err(409, "entry exists", (6, LATEST)),
    "RequestEntityTooLarge": _err(413, "request entity too large", (6, LATEST)),
    "StreamNotConfigured": _err(404, "stream not configured", (1, 3)),
    "ZoneSyncNotConfigured": _err(404, "zone sync not configured", (3, 3)),
    # status zones
    "SlabNotFound": _err(404, "slab not found"),
    "ServerZoneNotFound": _err(404, "server zone not found"),
    "LocationZoneNotFound": _err(404, "location zone not found", (5, LATEST)),
    "CacheNotFound": _err(404, "cache not found"),
    "LimitConnNotFound": _err(404, "limit_conn not found", (6, LATEST)),
    "LimitReqNotFound": _err(404, "limit_req not found", (6, LATEST)),
    "ResolverZoneNotFound": _err(404, "resolver zone not found", (5, LATEST)),
    "WorkerNotFound": _err(404, "worker not found", (9, LATEST)),
    # upstreams
    "UpstreamNotFound": _err(404, "upstream not found"),
    "UpstreamServerNotFound": _err(404, 'server with ID "{id}" does not exist'),
    "UpstreamStatic": _err(400, "upstream is static"),
    "UpstreamBadServerId": _err(400, "invalid server ID"),
    "UpstreamConfFormatError": _err(
        400, 'unknown parameter "{name}"', more=('invalid "{name}" value', 'missing "server" argument',
                                                 "nested object or list"),
    ),
    "UpstreamBadAddress": _err(
        400, '"{error}" while parsing', more=('invalid "server" argument', 'no port in server "{host}"',
                                              'service upstream "{host}" may not have port',
                                              'service upstream "{host}" requires domain name'),
    ),
    "UpstreamBadWeight": _err(400, 'invalid "weight"'),
    "UpstreamBadMaxConns": _err(400, 'invalid "max_conns"'),
    "UpstreamBadMaxFails": _err(400, 'invalid "max_fails"'),
    "UpstreamBadFailTimeout": _err(400, 'invalid "fail_timeout"'),
    "UpstreamBadSlowStart": _err(400, 'invalid "slow_start"'),
    "UpstreamBadRoute": _err(400, "route is too long"),
    "UpstreamBadService": _err(400, '"service" is empty'),
    "UpstreamConfNoResolver": _err(400, "no resolver defined to resolve"),
    "UpstreamNoBackup": _err(400, 'upstream "{upstream}" has no backup'),
    "UpstreamOutOfMemory": _err(400, 'upstream "{upstream}" memory exhausted'),
    "UpstreamServerImmutable": _err(
        400, 'server "{id}" address is immutable', more=('server "{id}" not removable',)
    ),
    "UpstreamServerWeightImmutable": _err(400, 'server "{id}" weight is immutable'),
    # keyvals
    "KeyvalNotFound": _err(404, "keyval not found"),
    "KeyvalKeyNotFound": _err(404, "keyval key not found"),
    "KeyvalKeyExists": _err(409, 'key "{key}" already exists'),
    "KeyvalFormatError": _err(
        400, "key required", more=("only one key can be added", "only one key can be updated",
                                   ("nested object or list", 1, 4), ("invalid JSON", 5),
                                   ("invalid key format", 5), ("keyval timeout is not enabled", 5)),
    ),
}

#: From v4 on, nginx answers a missing ``stream {}`` or ``zone_sync`` with the generic code.
_RENAMED_IN_V4 = {"StreamNotConfigured": "PathNotFound", "ZoneSyncNotConfigured": "PathNotFound"}


def error_codes_for(version: int) -> list[str]:
    """Every error code clustersim can answer in ``version``."""
    _check_version(version)
    return [code for code, err in ERRORS.items() if err.in_version(version)]


def endpoint_errors(endpoint: Endpoint, version: int) -> tuple[str, ...]:
    """The codes ``endpoint`` can answer in ``version`` (v4+ say PathNotFound for a missing stream)."""
    _check_version(version)
    codes: list[str] = []
    for code in endpoint.errors:
        if version >= 4:
            code = _RENAMED_IN_V4.get(code, code)
        if ERRORS[code].in_version(version) and code not in codes:
            codes.append(code)
    return tuple(codes)


def not_configured_error(version: int, what: str = "stream") -> str:
    """The code for a ``/stream/...`` request without ``stream {}`` (or ``what="zone_sync"``)."""
    _check_version(version)
    if version >= 4:
        return "PathNotFound"
    return "ZoneSyncNotConfigured" if what == "zone_sync" else "StreamNotConfigured"


def error_text(code: str, version: int = LATEST, variant: int = 0, **values: object) -> str:
    """The ``variant``-th wording of ``code`` valid in ``version``, with ``{names}`` filled in."""
    texts = [t.text for t in ERRORS[code].texts if t.first <= version <= (t.last or LATEST)]
    return texts[variant].format(**values)


# --------------------------------------------------------------------------------------------------
# Response objects: top-level field names in nginx's output order


def _by_version(*fields: str | tuple, first: int = 1, last: int = LATEST) -> dict[int, tuple[str, ...]]:
    """Field tuples per version; a field is a name, or (name, first) / (name, first, last)."""
    table = {}
    for v in range(first, last + 1):
        names = []
        for f in fields:
            name, lo, hi = (f, 1, LATEST) if isinstance(f, str) else (*f, LATEST)[:3]
            if lo <= v <= hi:
                names.append(name)
        table[v] = tuple(names)
    return table


# nginx writes the detailed ssl counters (R28, API 8) with session_reuses second: real /ssl capture.
_SSL_V8 = ("handshakes", "session_reuses", "handshakes_failed", "no_common_protocol", "no_common_cipher",
           "handshake_timeout", "peer_rejected_cert", "verify_failures")

#: FIELDS[object][version] -> top-level field names in output order. An object missing from a version
#: has no entry for it. Fields that appear only when they apply are listed in CONDITIONAL.
FIELDS: dict[str, dict[int, tuple[str, ...]]] = {
    "nginx": _by_version("version", "build", "address", "generation", "load_timestamp", "timestamp", "pid",
                         "ppid"),
    "processes": _by_version("respawned"),
    "connections": _by_version("accepted", "dropped", "active", "idle"),
    "ssl": {
        **_by_version("handshakes", "handshakes_failed", "session_reuses", last=7),
        **_by_version(*_SSL_V8, first=8),
    },
    "ssl_verify_failures": _by_version("no_cert", "expired_cert", "revoked_cert", "hostname_mismatch",
                                       "other", first=8),
    "slab": _by_version("pages", "slots"),
    "slab_pages": _by_version("used", "free"),
    "slab_slot": _by_version("used", "free", "reqs", "fails"),
    "http_requests": _by_version("total", "current"),
    "http_server_zone": _by_version("processing", "requests", "responses", "discarded", "received", "sent",
                                    ("ssl", 8)),
    "http_responses": _by_version("1xx", "2xx", "3xx", "4xx", "5xx", ("codes", 7), "total"),
    "zone_ssl": _by_version(*_SSL_V8, first=8),
    "zone_ssl_verify_failures": _by_version("no_cert", "expired_cert", "revoked_cert", "other", first=8),
    "http_location_zone": _by_version("requests", "responses", "discarded", "received", "sent", first=5),
    "http_cache": _by_version("size", "max_size", "cold", "hit", "stale", "updating", "revalidated", "miss",
                              "expired", "bypass"),
    "http_cache_read": _by_version("responses", "bytes"),
    "http_cache_fetched": _by_version("responses", "bytes", "responses_written", "bytes_written"),
    "http_upstream": _by_version("peers", "keepalive", "queue", "zombies", "zone"),
    "http_upstream_queue": _by_version("size", "max_size", "overflows"),
    "http_upstream_peer": _by_version(
        "id", "server", "service", "name", "backup", "weight", "state", "active", ("ssl", 8), "max_conns",
        "requests", "header_time", "response_time", ("response_time_hist", 9), "responses", "sent",
        "received", "fails", "unavail", "health_checks", "downtime", "downstart", "selected",
    ),
    "health_checks": _by_version("checks", "fails", "unhealthy", "last_passed"),
    "peer_ssl": _by_version("handshakes", "session_reuses", "handshakes_failed", "no_common_protocol",
                            "handshake_timeout", "peer_rejected_cert", "verify_failures", first=8),
    "peer_ssl_verify_failures": _by_version("expired_cert", "revoked_cert", "hostname_mismatch", "other",
                                            first=8),
    "response_time_hist": _by_version("count", "sum", "buckets", first=9),
    "response_time_hist_buckets": _by_version("5", "10", "25", "50", "75", "100", "250", "500", "750", "1000",
                                              "2500", "5000", "7500", "10000", "inf", first=9),
    "http_upstream_conf_server": _by_version(
        "id", "server", "service", "weight", "max_conns", "max_fails", "fail_timeout", "slow_start", "route",
        "backup", "down", "drain", "parent", "host",
    ),
    "stream_server_zone": _by_version("processing", "connections", "sessions", "discarded", "received",
                                      "sent", ("ssl", 8)),
    "stream_sessions": _by_version("2xx", "4xx", "5xx", "total"),
    "stream_upstream": _by_version("peers", "zombies", "zone"),
    "stream_upstream_peer": _by_version(
        "id", "server", "service", "name", "backup", "weight", "state", "active", ("ssl", 8), "max_conns",
        "connections", "connect_time", "first_byte_time", "response_time", "sent", "received", "fails",
        "unavail", "health_checks", "downtime", "downstart", "selected",
    ),
    "stream_upstream_conf_server": _by_version(
        "id", "server", "service", "weight", "max_conns", "max_fails", "fail_timeout", "slow_start", "backup",
        "down", "parent", "host",
    ),
    "zone_sync": _by_version("zones", "status", first=3),
    "zone_sync_zone": _by_version("records_pending", "records_total", first=3),
    "zone_sync_status": _by_version("bytes_in", "msgs_in", "msgs_out", "bytes_out", "nodes_online", first=3),
    "resolver_zone": _by_version("requests", "responses", first=5),
    "resolver_requests": _by_version("name", "srv", "addr", first=5),
    "resolver_responses": _by_version("noerror", "formerr", "servfail", "nxdomain", "notimp", "refused",
                                      "timedout", "unknown", first=5),
    "limit_req": _by_version("passed", "delayed", "rejected", "delayed_dry_run", "rejected_dry_run", first=6),
    "limit_conn": _by_version("passed", "rejected", "rejected_dry_run", first=6),
    "worker": _by_version("id", "pid", "connections", "http", first=9),
    "worker_connections": _by_version("accepted", "dropped", "active", "idle", first=9),
    "worker_http": _by_version("requests", first=9),
    "worker_http_requests": _by_version("total", "current", first=9),
    "license": _by_version("eval", "active_till", "reporting", first=9),
    "license_reporting": _by_version("healthy", "fails", "grace", "uuid", first=9),
    "error": _by_version(("path", 1, 3), ("method", 1, 3), "error", "request_id", "href"),
    "error_detail": _by_version("status", "text", "code"),
}

_ONLY_TLS = "v8+: only when the zone's server accepts TLS (ssl listener)"
_PEER_TLS = "v8+: only when connections to the server use TLS"
_SERVICE = "only for servers defined with service="
_NON_ZERO_MAX_CONNS = "only when max_conns is not 0"
_DOWN_SINCE = "only while the state is unavail, checking or unhealthy"
_RESOLVED = "only for servers created by resolving a domain name"

#: CONDITIONAL[object][field] -> when the field appears; every other field is always present.
CONDITIONAL: dict[str, dict[str, str]] = {
    "http_server_zone": {"ssl": _ONLY_TLS},
    "stream_server_zone": {"ssl": _ONLY_TLS},
    "http_cache": {"max_size": "only when the cache path sets max_size"},
    "http_upstream": {"queue": "only when the upstream has a queue directive"},
    "http_upstream_peer": {
        "service": _SERVICE,
        "ssl": _PEER_TLS,
        "max_conns": _NON_ZERO_MAX_CONNS,
        "header_time": "only once a request was sent to the server (requests > 0)",
        "response_time": "only once a request was sent to the server (requests > 0)",
        "response_time_hist": "v9: only once a request was sent to the server (requests > 0)",
        "downstart": _DOWN_SINCE,
        "selected": "only once the server was selected for a request",
    },
    "stream_upstream_peer": {
        "service": _SERVICE,
        "ssl": _PEER_TLS,
        "max_conns": _NON_ZERO_MAX_CONNS,
        "connect_time": "only once a connection was made to the server (connections > 0)",
        "first_byte_time": "only once a connection was made to the server (connections > 0)",
        "response_time": "only once a connection was made to the server (connections > 0)",
        "downstart": _DOWN_SINCE,
        "selected": "only once the server was selected for a connection",
    },
    "health_checks": {"last_passed": "only once a health check has run"},
    "http_upstream_conf_server": {
        "service": _SERVICE,
        "drain": "only while draining, and then always true",
        "parent": _RESOLVED,
        "host": _RESOLVED,
    },
    "stream_upstream_conf_server": {"service": _SERVICE, "parent": _RESOLVED, "host": _RESOLVED},
}


def fields(obj: str, version: int) -> tuple[str, ...]:
    """Every top-level field ``obj`` can have in ``version``, in output order (empty if absent)."""
    return FIELDS[obj].get(version, ())


def always_fields(obj: str, version: int) -> tuple[str, ...]:
    """The fields of ``obj`` in ``version`` that are present in every unfiltered response."""
    conditional = CONDITIONAL.get(obj, {})
    return tuple(name for name in fields(obj, version) if name not in conditional)


def objects_for(version: int) -> list[str]:
    """The response objects that exist in ``version``."""
    return [name for name, table in FIELDS.items() if version in table]


# --------------------------------------------------------------------------------------------------
# JSON Schemas (api/schemas/vN.json)

_SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@cache
def _schema_text(version: int) -> str:
    return (_SCHEMA_DIR / f"v{version}.json").read_text(encoding="utf-8")


def load_schema(version: int) -> dict:
    """The whole schema file of ``version``, parsed afresh on each call (for tests and checkers)."""
    _check_version(version)
    return json.loads(_schema_text(version))


def object_schema(version: int, name: str) -> dict:
    """A self-contained schema validating one ``$defs`` object of ``version`` (e.g. ``"http_upstream"``)."""
    schema = load_schema(version)
    if name not in schema["$defs"]:
        raise KeyError(f"no {name!r} in API version {version}")
    return {"$schema": SCHEMA_DIALECT, "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}


def response_schema(version: int, method: str, path: str) -> dict | None:
    """The schema of the success body of ``method path`` in ``version``; None if it has no body."""
    endpoint = find_endpoint(version, method, path)
    if endpoint is None:
        raise KeyError(f"no {method} {path} in API version {version}")
    if endpoint.body is None:
        return None
    return object_schema(version, endpoint.body)


def _check_version(version: int) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown API version {version!r}")
