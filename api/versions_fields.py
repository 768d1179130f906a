"""Response objects of the API, version by version: top-level fields in nginx's output order.

:data:`FIELDS` lists, for each object and version, every top-level field the object can have;
:data:`CONDITIONAL` says which of them appear only when they apply, and when. Part of the
contract that :mod:`api.versions` presents as a whole (import it from there); standard library
only.
"""

from __future__ import annotations

from .versions_endpoints import LATEST

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
