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
standard library and its two siblings, which import only the standard library too, so that tests,
load-test checkers and the renderer can all share it.

This module holds the error codes and the JSON Schema access, and presents the whole contract:
:mod:`api.versions_endpoints` holds the versions, their releases and the endpoint table, and
:mod:`api.versions_fields` the fields of every response object; their names are reachable from
here as before.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import NamedTuple

# The endpoint and field tables, reachable as ``versions.<name>`` as before the split.
from .versions_endpoints import (  # noqa: F401
    ENDPOINTS,
    LATEST,
    RELEASES,
    VERSIONS,
    Endpoint,
    Release,
    _check_version,
    endpoints_for,
    find_endpoint,
    http_entries,
    methods_for,
    root_entries,
    stream_entries,
)
from .versions_fields import CONDITIONAL, FIELDS, always_fields, fields, objects_for  # noqa: F401

#: The ``href`` of every error object.
ERROR_HREF = "https://nginx.org/en/docs/http/ngx_http_api_module.html"

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


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
