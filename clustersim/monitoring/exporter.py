"""What nginx-prometheus-exporter (``-nginx.plus``) makes of one node's NGINX Plus API.

:func:`samples` turns the API objects of a node (as :func:`api.render.node_state` renders them,
the same objects ``GET /api/9/...`` returns) into the exporter's metrics: the same names (the
``nginxplus`` namespace), the same labels (``server_zone``, ``upstream`` and ``server`` -- the
peer's address, not its id --, ``zone``, ``location_zone``, ``resolver``, worker ``id``/``pid``,
``code`` for response classes and codes), the same counter/gauge types and the same value
encodings (peer ``state`` as 1..6, ``cold`` as 0/1). As the exporter does, per-peer health check
counters appear only once a check has run, and response codes are the fixed list the exporter
knows, zero when absent. Metrics of parts the exporter does not publish (keyvals, slabs,
license) are left out. The facts were read from the exporter's collector (docs/monitoring.md).
"""

from __future__ import annotations

from collections.abc import Iterator

COUNTER, GAUGE = "counter", "gauge"

#: Peer states as the exporter encodes them.
PEER_STATES = {"up": 1, "draining": 2, "down": 3, "unavail": 4, "checking": 5, "unhealthy": 6}

#: The response codes the exporter publishes (``responses_codes{code=...}``), in its order.
CODES = (100, 101, 102, 200, 201, 202, 204, 206, 300, 301, 302, 303, 304, 307, 400, 401, 403, 404,
         405, 408, 409, 411, 412, 413, 414, 415, 416, 429, 444, 494, 495, 496, 497, 499, 500, 501,
         502, 503, 504, 507)

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

#: family name -> (type, help). The help texts are ours; the names and types are the exporter's.
FAMILIES: dict[str, tuple[str, str]] = {}


def _family(name: str, kind: str, help_text: str) -> str:
    FAMILIES[name] = (kind, help_text)
    return name


UP = _family("nginxplus_up", GAUGE, "Whether the last scrape of the NGINX Plus API succeeded (1) or not (0)")
_GLOBAL = [
    ("connections_accepted", COUNTER, "Client connections accepted", ("connections", "accepted")),
    ("connections_dropped", COUNTER, "Client connections dropped", ("connections", "dropped")),
    ("connections_active", GAUGE, "Client connections now active", ("connections", "active")),
    ("connections_idle", GAUGE, "Client connections now idle", ("connections", "idle")),
    ("http_requests_total", COUNTER, "HTTP requests received", ("http", "requests", "total")),
    ("http_requests_current", GAUGE, "HTTP requests in progress", ("http", "requests", "current")),
    ("ssl_handshakes", COUNTER, "TLS handshakes completed", ("ssl", "handshakes")),
    ("ssl_handshakes_failed", COUNTER, "TLS handshakes that failed", ("ssl", "handshakes_failed")),
    ("ssl_session_reuses", COUNTER, "TLS sessions reused", ("ssl", "session_reuses")),
]
for _n, _k, _h, _p in _GLOBAL:
    _family("nginxplus_" + _n, _k, _h)

_ZONE_COUNTERS = ("requests", "discarded", "received", "sent")
for _prefix, _what in (("server_zone", "server zone"), ("location_zone", "location zone")):
    _family(f"nginxplus_{_prefix}_requests", COUNTER, f"Requests counted in the {_what}")
    _family(f"nginxplus_{_prefix}_responses", COUNTER, f"Responses of the {_what} by class")
    _family(f"nginxplus_{_prefix}_responses_codes", COUNTER, f"Responses of the {_what} by status code")
    _family(f"nginxplus_{_prefix}_discarded", COUNTER, f"Requests of the {_what} finished without a response")
    _family(f"nginxplus_{_prefix}_received", COUNTER, f"Bytes received from clients in the {_what}")
    _family(f"nginxplus_{_prefix}_sent", COUNTER, f"Bytes sent to clients in the {_what}")
_family("nginxplus_server_zone_processing", GAUGE, "Requests of the server zone in progress")
for _n, _h in (("handshakes", "TLS handshakes completed"), ("handshakes_failed", "TLS handshakes that failed"),
               ("session_reuses", "TLS sessions reused")):
    _family(f"nginxplus_server_zone_ssl_{_n}", COUNTER, f"{_h} in the server zone")
    _family(f"nginxplus_stream_server_zone_ssl_{_n}", COUNTER, f"{_h} in the stream server zone")
    _family(f"nginxplus_upstream_server_ssl_{_n}", COUNTER, f"{_h} with the upstream server")
    _family(f"nginxplus_stream_upstream_server_ssl_{_n}", COUNTER, f"{_h} with the stream upstream server")

_family("nginxplus_stream_server_zone_processing", GAUGE, "Stream connections in progress")
_family("nginxplus_stream_server_zone_connections", COUNTER, "Stream connections accepted")
_family("nginxplus_stream_server_zone_sessions", COUNTER, "Stream sessions finished, by class")
_family("nginxplus_stream_server_zone_discarded", COUNTER, "Stream connections closed before a session")
_family("nginxplus_stream_server_zone_received", COUNTER, "Bytes received from stream clients")
_family("nginxplus_stream_server_zone_sent", COUNTER, "Bytes sent to stream clients")

_family("nginxplus_upstream_keepalive", GAUGE, "Idle keepalive connections to the upstream")
_family("nginxplus_upstream_zombies", GAUGE, "Servers removed from the upstream that still serve requests")
_family("nginxplus_stream_upstream_zombies", GAUGE, "Servers removed from the stream upstream that still serve connections")

_PEER_HTTP = [
    ("state", GAUGE, "Server state (1 up, 2 draining, 3 down, 4 unavail, 5 checking, 6 unhealthy)"),
    ("active", GAUGE, "Connections to the server now active"),
    ("limit", GAUGE, "The server's max_conns (0: no limit)"),
    ("requests", COUNTER, "Requests sent to the server"),
    ("responses", COUNTER, "Responses from the server by class"),
    ("responses_codes", COUNTER, "Responses from the server by status code"),
    ("sent", COUNTER, "Bytes sent to the server"),
    ("received", COUNTER, "Bytes received from the server"),
    ("fails", COUNTER, "Failed attempts to talk to the server"),
    ("unavail", COUNTER, "Times the server became unavailable after max_fails"),
    ("header_time", GAUGE, "Average time to the response header, ms"),
    ("response_time", GAUGE, "Average time to the whole response, ms"),
    ("health_checks_checks", COUNTER, "Health check requests made"),
    ("health_checks_fails", COUNTER, "Health checks failed"),
    ("health_checks_unhealthy", COUNTER, "Times the server became unhealthy"),
]
for _n, _k, _h in _PEER_HTTP:
    _family(f"nginxplus_upstream_server_{_n}", _k, _h)
_PEER_STREAM = [
    ("state", GAUGE, "Server state (1 up, 2 draining, 3 down, 4 unavail, 5 checking, 6 unhealthy)"),
    ("active", GAUGE, "Connections to the server now active"),
    ("limit", GAUGE, "The server's max_conns (0: no limit)"),
    ("connections", COUNTER, "Client connections passed to the server"),
    ("connect_time", GAUGE, "Average time to connect to the server, ms"),
    ("first_byte_time", GAUGE, "Average time to the first byte from the server, ms"),
    ("response_time", GAUGE, "Average time to the last byte from the server, ms"),
    ("sent", COUNTER, "Bytes sent to the server"),
    ("received", COUNTER, "Bytes received from the server"),
    ("fails", COUNTER, "Failed attempts to talk to the server"),
    ("unavail", COUNTER, "Times the server became unavailable after max_fails"),
    ("health_checks_checks", COUNTER, "Health check requests made"),
    ("health_checks_fails", COUNTER, "Health checks failed"),
    ("health_checks_unhealthy", COUNTER, "Times the server became unhealthy"),
]
for _n, _k, _h in _PEER_STREAM:
    _family(f"nginxplus_stream_upstream_server_{_n}", _k, _h)

_ZS_STATUS = [("bytes_in", COUNTER, "Bytes zone_sync received"), ("bytes_out", COUNTER, "Bytes zone_sync sent"),
              ("msgs_in", COUNTER, "Messages zone_sync received"), ("msgs_out", COUNTER, "Messages zone_sync sent"),
              ("nodes_online", GAUGE, "Cluster nodes this node is connected to")]
for _n, _k, _h in _ZS_STATUS:
    _family(f"nginxplus_stream_zone_sync_status_{_n}", _k, _h)
_family("nginxplus_stream_zone_sync_zone_records_pending", GAUGE, "Records of the zone still to be sent to the cluster")
_family("nginxplus_stream_zone_sync_zone_records_total", GAUGE, "Records the zone holds")

_RESOLVER = [("name", "requests"), ("srv", "requests"), ("addr", "requests"), ("noerror", "responses"),
             ("formerr", "responses"), ("servfail", "responses"), ("nxdomain", "responses"),
             ("notimp", "responses"), ("refused", "responses"), ("timedout", "responses"), ("unknown", "responses")]
for _n, _part in _RESOLVER:
    _family(f"nginxplus_resolver_{_n}", COUNTER, f"Resolver {_part}: {_n}")
_LIMIT_REQ = ("passed", "delayed", "rejected", "delayed_dry_run", "rejected_dry_run")
for _n in _LIMIT_REQ:
    _family(f"nginxplus_limit_request_{_n}", COUNTER, f"limit_req requests {_n.replace('_', ' ')}")
_LIMIT_CONN = ("passed", "rejected", "rejected_dry_run")
for _n in _LIMIT_CONN:
    _family(f"nginxplus_limit_connection_{_n}", COUNTER, f"limit_conn connections {_n.replace('_', ' ')}")
    _family(f"nginxplus_stream_limit_connection_{_n}", COUNTER, f"stream limit_conn connections {_n.replace('_', ' ')}")

_CACHE_GAUGES = ("size", "max_size", "cold")
_CACHE_STATUSES = ("hit", "stale", "updating", "revalidated", "miss", "expired", "bypass")
for _n in _CACHE_GAUGES:
    _family(f"nginxplus_cache_{_n}", GAUGE, f"Cache {_n.replace('_', ' ')}")
for _st in _CACHE_STATUSES:
    _family(f"nginxplus_cache_{_st}_responses", COUNTER, f"Responses served with cache status {_st}")
    _family(f"nginxplus_cache_{_st}_bytes", COUNTER, f"Bytes served with cache status {_st}")
    if _st in ("expired", "bypass"):
        _family(f"nginxplus_cache_{_st}_responses_written", COUNTER, f"Responses with cache status {_st} written to the cache")
        _family(f"nginxplus_cache_{_st}_bytes_written", COUNTER, f"Bytes with cache status {_st} written to the cache")
_WORKER = [("connection_accepted", COUNTER, ("connections", "accepted")),
           ("connection_dropped", COUNTER, ("connections", "dropped")),
           ("connection_active", GAUGE, ("connections", "active")),
           ("connection_idle", GAUGE, ("connections", "idle")),
           ("http_requests_total", COUNTER, ("http", "requests", "total")),
           ("http_requests_current", GAUGE, ("http", "requests", "current"))]
for _n, _k, _p in _WORKER:
    _family(f"nginxplus_worker_{_n}", _k, f"Worker process: {_n.replace('_', ' ')}")

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def _get(obj, path, default=0):
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return default
        obj = obj[part]
    return obj


def _codes(responses: dict) -> dict[int, int]:
    """``responses.codes`` keyed by number (the API keys them by the code's text)."""
    out: dict[int, int] = {}
    for k, v in (responses.get("codes") or {}).items():
        if str(k).isdigit():
            out[int(k)] = v
    return out


def samples(state: dict | None) -> Iterator[Sample]:
    """The exporter's samples for one node's API objects (``None``: the scrape failed)."""
    if state is None:
        yield UP, (), 0.0
        return
    yield UP, (), 1.0
    for name, _kind, _help, path in _GLOBAL:
        yield "nginxplus_" + name, (), float(_get(state, path))
    http = state.get("http") or {}
    stream = state.get("stream") or {}
    for zname, z in (http.get("server_zones") or {}).items():
        yield from _zone("server_zone", "server_zone", zname, z)
        yield "nginxplus_server_zone_processing", (("server_zone", zname),), float(z.get("processing", 0))
        for n in ("handshakes", "handshakes_failed", "session_reuses"):
            yield f"nginxplus_server_zone_ssl_{n}", (("server_zone", zname),), float(_get(z, ("ssl", n)))
    for zname, z in (stream.get("server_zones") or {}).items():
        lab = (("server_zone", zname),)
        yield "nginxplus_stream_server_zone_processing", lab, float(z.get("processing", 0))
        yield "nginxplus_stream_server_zone_connections", lab, float(z.get("connections", 0))
        for cls in ("2xx", "4xx", "5xx"):
            yield "nginxplus_stream_server_zone_sessions", (*lab, ("code", cls)), float(_get(z, ("sessions", cls)))
        for n in ("discarded", "received", "sent"):
            yield f"nginxplus_stream_server_zone_{n}", lab, float(z.get(n, 0))
        for n in ("handshakes", "handshakes_failed", "session_reuses"):
            yield f"nginxplus_stream_server_zone_ssl_{n}", lab, float(_get(z, ("ssl", n)))
    for uname, up in (http.get("upstreams") or {}).items():
        for p in up.get("peers", ()):
            yield from _http_peer(uname, p)
        yield "nginxplus_upstream_keepalive", (("upstream", uname),), float(up.get("keepalive", 0))
        yield "nginxplus_upstream_zombies", (("upstream", uname),), float(up.get("zombies", 0))
    for uname, up in (stream.get("upstreams") or {}).items():
        for p in up.get("peers", ()):
            yield from _stream_peer(uname, p)
        yield "nginxplus_stream_upstream_zombies", (("upstream", uname),), float(up.get("zombies", 0))
    zs = stream.get("zone_sync")
    if zs:
        for zname, z in zs.get("zones", {}).items():
            for n in ("records_pending", "records_total"):
                yield f"nginxplus_stream_zone_sync_zone_{n}", (("zone", zname),), float(z.get(n, 0))
        for n, _k, _h in _ZS_STATUS:
            yield f"nginxplus_stream_zone_sync_status_{n}", (), float(_get(zs, ("status", n)))
    for zname, z in (http.get("location_zones") or {}).items():
        yield from _zone("location_zone", "location_zone", zname, z)
    for rname, r in (state.get("resolvers") or {}).items():
        for n, part in _RESOLVER:
            yield f"nginxplus_resolver_{n}", (("resolver", rname),), float(_get(r, (part, n)))
    for zname, z in (http.get("limit_reqs") or {}).items():
        for n in _LIMIT_REQ:
            yield f"nginxplus_limit_request_{n}", (("zone", zname),), float(z.get(n, 0))
    for prefix, zones in (("limit_connection", http.get("limit_conns")), ("stream_limit_connection", stream.get("limit_conns"))):
        for zname, z in (zones or {}).items():
            for n in _LIMIT_CONN:
                yield f"nginxplus_{prefix}_{n}", (("zone", zname),), float(z.get(n, 0))
    for cname, c in (http.get("caches") or {}).items():
        lab = (("zone", cname),)
        yield "nginxplus_cache_size", lab, float(c.get("size", 0))
        yield "nginxplus_cache_max_size", lab, float(c.get("max_size", 0))
        yield "nginxplus_cache_cold", lab, 1.0 if c.get("cold") else 0.0
        for st in _CACHE_STATUSES:
            yield f"nginxplus_cache_{st}_responses", lab, float(_get(c, (st, "responses")))
            yield f"nginxplus_cache_{st}_bytes", lab, float(_get(c, (st, "bytes")))
            if st in ("expired", "bypass"):
                yield f"nginxplus_cache_{st}_responses_written", lab, float(_get(c, (st, "responses_written")))
                yield f"nginxplus_cache_{st}_bytes_written", lab, float(_get(c, (st, "bytes_written")))
    for w in state.get("workers") or ():
        lab = (("id", str(w.get("id", 0))), ("pid", str(w.get("pid", 0))))
        for n, _k, path in _WORKER:
            yield f"nginxplus_worker_{n}", lab, float(_get(w, path))


def _zone(prefix: str, label: str, name: str, z: dict) -> Iterator[Sample]:
    lab = ((label, name),)
    yield f"nginxplus_{prefix}_requests", lab, float(z.get("requests", 0))
    resp = z.get("responses") or {}
    for cls in CLASSES:
        yield f"nginxplus_{prefix}_responses", (*lab, ("code", cls)), float(resp.get(cls, 0))
    codes = _codes(resp)
    for code in CODES:
        yield f"nginxplus_{prefix}_responses_codes", (*lab, ("code", str(code))), float(codes.get(code, 0))
    for n in ("discarded", "received", "sent"):
        yield f"nginxplus_{prefix}_{n}", lab, float(z.get(n, 0))


def _health(p: dict) -> dict | None:
    hc = p.get("health_checks") or {}
    if not any((hc.get("checks"), hc.get("fails"), hc.get("unhealthy"), hc.get("last_passed"))):
        return None  # the exporter skips a peer's health check counters until a check ran
    return hc


def _http_peer(uname: str, p: dict) -> Iterator[Sample]:
    lab = (("upstream", uname), ("server", p["server"]))
    m = "nginxplus_upstream_server_"
    yield m + "state", lab, float(PEER_STATES.get(p.get("state"), 0))
    yield m + "active", lab, float(p.get("active", 0))
    yield m + "limit", lab, float(p.get("max_conns", 0))
    yield m + "requests", lab, float(p.get("requests", 0))
    resp = p.get("responses") or {}
    for cls in CLASSES:
        yield m + "responses", (*lab, ("code", cls)), float(resp.get(cls, 0))
    for n in ("sent", "received", "fails", "unavail", "header_time", "response_time"):
        yield m + n, lab, float(p.get(n, 0))
    hc = _health(p)
    if hc is not None:
        for n in ("checks", "fails", "unhealthy"):
            yield m + "health_checks_" + n, lab, float(hc.get(n, 0))
    for n in ("handshakes", "handshakes_failed", "session_reuses"):
        yield m + "ssl_" + n, lab, float(_get(p, ("ssl", n)))
    codes = _codes(resp)
    for code in CODES:
        yield m + "responses_codes", (*lab, ("code", str(code))), float(codes.get(code, 0))


def _stream_peer(uname: str, p: dict) -> Iterator[Sample]:
    lab = (("upstream", uname), ("server", p["server"]))
    m = "nginxplus_stream_upstream_server_"
    yield m + "state", lab, float(PEER_STATES.get(p.get("state"), 0))
    yield m + "active", lab, float(p.get("active", 0))
    yield m + "limit", lab, float(p.get("max_conns", 0))
    for n in ("connections", "connect_time", "first_byte_time", "response_time", "sent", "received", "fails", "unavail"):
        yield m + n, lab, float(p.get(n, 0))
    hc = _health(p)
    if hc is not None:
        for n in ("checks", "fails", "unhealthy"):
            yield m + "health_checks_" + n, lab, float(hc.get(n, 0))
    for n in ("handshakes", "handshakes_failed", "session_reuses"):
        yield m + "ssl_" + n, lab, float(_get(p, ("ssl", n)))
