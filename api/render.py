"""Pure renderers: model objects -> the NGINX Plus REST API's JSON objects, version by version.

Each function takes a model object (or the node) and an API version and returns a plain dict (or
list) with nginx's field names, in the order real nginx writes them, with the fields that exist
in that version and appear only when they apply (``api/versions.py`` lists them). Nothing here
touches HTTP: the routers call these functions and encode the result, the run summary calls
:func:`node_state`, and tests call them directly. Units follow nginx: byte and request counters
are integers, durations in milliseconds as integers, instants as ISO 8601 strings from the
node's clock (``selected`` at second resolution, as real output shows). :class:`UpstreamBodies`
keeps encoded upstream objects and reuses them while the model has not changed them.

The ``where the model keeps it`` helpers at the end (``caches``, ``stream_server_zones``,
``slab_pools`` ...) are the one place that knows where a node holds each collection; the model
is growing, so they read optional attributes defensively and return empty collections when a
part of the model does not exist yet.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

import orjson

from sim.core.clock import iso_s
from sim.upstream.upstream import DOWNISH

from . import versions as V

LATEST = V.LATEST

_RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_HIST_KEYS = V.fields("response_time_hist_buckets", LATEST)


# --------------------------------------------------------------------------------------------------
# Small helpers


@lru_cache(maxsize=4096)
def _iso_s(seconds: int) -> str:
    return iso_s(seconds * 1000)


def _ms(value: float | None) -> int:
    """A duration or average in milliseconds as the API shows it: a rounded integer."""
    return int(round(value)) if value is not None else 0


_CODE_TEXT = {code: str(code) for code in range(100, 600)}


def codes_dict(codes: dict[int, int]) -> dict[str, int]:
    """``responses.codes`` (API 7+): status codes that occurred, as strings, in numeric order."""
    return {_CODE_TEXT.get(code) or str(code): codes[code] for code in sorted(codes)}


def responses(counts, codes: dict[int, int] | None, version: int) -> dict:
    """``responses`` of a server zone, location zone or peer: ``1xx..5xx``, ``codes`` (7+), ``total``."""
    out = {"1xx": counts[0], "2xx": counts[1], "3xx": counts[2], "4xx": counts[3], "5xx": counts[4]}
    if version >= 7:
        out["codes"] = codes_dict(codes or {})
    out["total"] = sum(counts)
    return out


def filter_fields(obj: dict, fields: str | None) -> dict:
    """Apply the ``fields`` argument to one object: keep the named top-level fields, in object order.

    ``None`` (no argument) keeps everything; an empty value keeps nothing; names the object does
    not have are ignored.
    """
    if fields is None:
        return obj
    wanted = {f for f in fields.split(",") if f}
    return {k: v for k, v in obj.items() if k in wanted}


def filter_members(collection: dict, fields: str | None) -> dict:
    """Apply ``fields`` to every member of a collection; empty ``fields`` leaves ``{name: {}}``."""
    if fields is None:
        return collection
    return {name: filter_fields(obj, fields) for name, obj in collection.items()}


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


def ssl(counters, version: int, kind: str = "ssl") -> dict:
    """``/ssl`` (kind ``"ssl"``), a server zone's ``ssl`` (``"zone"``) or a peer's (``"peer"``).

    Up to API 7 the three basic counters; from 8 the detailed failure counters, whose set differs
    between the three places (a peer has no ``no_common_cipher`` and no ``no_cert``; only
    ``/ssl`` has ``hostname_mismatch`` on the client side).
    """
    c = counters
    if version < 8:
        return {
            "handshakes": c.handshakes,
            "handshakes_failed": c.handshakes_failed,
            "session_reuses": c.session_reuses,
        }
    out = {
        "handshakes": c.handshakes,
        "session_reuses": c.session_reuses,
        "handshakes_failed": c.handshakes_failed,
        "no_common_protocol": c.no_common_protocol,
    }
    if kind != "peer":
        out["no_common_cipher"] = c.no_common_cipher
    out["handshake_timeout"] = c.handshake_timeout
    out["peer_rejected_cert"] = c.peer_rejected_cert
    if kind == "ssl":
        vf = {
            "no_cert": c.verify_no_cert,
            "expired_cert": c.verify_expired_cert,
            "revoked_cert": c.verify_revoked_cert,
            "hostname_mismatch": c.verify_hostname_mismatch,
            "other": c.verify_other,
        }
    elif kind == "zone":
        vf = {
            "no_cert": c.verify_no_cert,
            "expired_cert": c.verify_expired_cert,
            "revoked_cert": c.verify_revoked_cert,
            "other": c.verify_other,
        }
    else:
        vf = {
            "expired_cert": c.verify_expired_cert,
            "revoked_cert": c.verify_revoked_cert,
            "hostname_mismatch": c.verify_hostname_mismatch,
            "other": c.verify_other,
        }
    out["verify_failures"] = vf
    return out


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
# Upstreams


def _health_checks(p) -> dict:
    last = p.hc_last_passed
    if last is None:
        return {"checks": p.hc_checks, "fails": p.hc_fails, "unhealthy": p.hc_unhealthy}
    return {"checks": p.hc_checks, "fails": p.hc_fails, "unhealthy": p.hc_unhealthy, "last_passed": last}


def _down_fields(out: dict, p, now: float, clock) -> None:
    out["downtime"] = round(p.downtime_at(now))
    start = p.downstart_at(now)
    if start is not None:
        out["downstart"] = clock.iso_at(start)
    selected = p.selected
    if selected is not None:
        out["selected"] = _iso_s(int((clock.epoch_ms + selected + clock.offset_ms) // 1000))


def _hist_buckets(h: list[int]) -> dict[str, int]:
    # written out: three times faster than dict(zip(...)) on the hottest path
    return {"5": h[0], "10": h[1], "25": h[2], "50": h[3], "75": h[4], "100": h[5], "250": h[6],
            "500": h[7], "750": h[8], "1000": h[9], "2500": h[10], "5000": h[11], "7500": h[12],
            "10000": h[13], "inf": h[14]}



def peer(p, version: int, now: float, clock) -> dict:
    """One peer of ``/http/upstreams/{u}/``, in the key order of real output.

    The hot path of the busiest endpoint (monitoring tools poll every upstream every few
    seconds), hence written out field by field.
    """
    state = p.state_at(now)
    out = {"id": p.id, "server": p.server}
    if p.service is not None:
        out["service"] = p.service
    out["name"] = p.name
    out["backup"] = p.backup
    out["weight"] = p.weight
    out["state"] = state
    out["active"] = p.active
    if version >= 8:
        peer_ssl = p.ssl
        if peer_ssl is not None:
            out["ssl"] = ssl(peer_ssl, version, "peer")
    if p.max_conns:
        out["max_conns"] = p.max_conns
    out["requests"] = p.requests
    if p.requests:
        # present once a request was sent, 0 until a response came (as real output shows)
        out["header_time"] = round(p.header_time or 0)
        out["response_time"] = round(p.response_time or 0)
        if version >= 9:
            hist = p.hist
            out["response_time_hist"] = {"count": sum(hist), "sum": round(p.hist_sum),
                                         "buckets": _hist_buckets(hist)}
    r = p.responses
    if version >= 7:
        codes = p.codes
        code_text = _CODE_TEXT
        out["responses"] = {"1xx": r[0], "2xx": r[1], "3xx": r[2], "4xx": r[3], "5xx": r[4],
                            "codes": {code_text.get(c) or str(c): codes[c] for c in sorted(codes)},
                            "total": r[0] + r[1] + r[2] + r[3] + r[4]}
    else:
        out["responses"] = {"1xx": r[0], "2xx": r[1], "3xx": r[2], "4xx": r[3], "5xx": r[4],
                            "total": r[0] + r[1] + r[2] + r[3] + r[4]}
    out["sent"] = p.sent
    out["received"] = p.received
    out["fails"] = p.fails
    out["unavail"] = p.unavail
    out["health_checks"] = _health_checks(p)
    out["downtime"] = round(p.downtime_at(now))
    start = p.downstart_at(now)
    if start is not None:
        out["downstart"] = clock.iso_at(start)
    selected = p.selected
    if selected is not None:
        out["selected"] = _iso_s(int((clock.epoch_ms + selected + clock.offset_ms) // 1000))
    return out


def upstream(up, version: int, now: float, clock) -> dict:
    """``/http/upstreams/{u}/``: ``queue`` only when the upstream has a ``queue`` directive."""
    out = {"peers": [peer(p, version, now, clock) for p in up.peers], "keepalive": up.keepalive}
    if up.queue_max:
        out["queue"] = {"size": up.queue_len, "max_size": up.queue_max, "overflows": up.overflows}
    out["zombies"] = up.zombies
    out["zone"] = up.zone
    return out


def upstreams(node, version: int) -> dict:
    now, clock = node.env.now, node.clock
    return {name: upstream(up, version, now, clock) for name, up in node.upstreams.items()}


def stream_peer(p, version: int, now: float, clock) -> dict:
    """One peer of ``/stream/upstreams/{u}/``."""
    out = {"id": p.id, "server": p.server}
    if p.service is not None:
        out["service"] = p.service
    out["name"] = p.name
    out["backup"] = p.backup
    out["weight"] = p.weight
    out["state"] = p.state_at(now)
    out["active"] = p.active
    if version >= 8:
        peer_ssl = p.ssl
        if peer_ssl is not None:
            out["ssl"] = ssl(peer_ssl, version, "peer")
    if p.max_conns:
        out["max_conns"] = p.max_conns
    out["connections"] = p.connections
    if p.connections:
        out["connect_time"] = _ms(p.connect_time)
        out["first_byte_time"] = _ms(p.first_byte_time)
        out["response_time"] = _ms(p.response_time)
    out["sent"] = p.sent
    out["received"] = p.received
    out["fails"] = p.fails
    out["unavail"] = p.unavail
    out["health_checks"] = _health_checks(p)
    _down_fields(out, p, now, clock)
    return out


def stream_upstream(up, version: int, now: float, clock) -> dict:
    """``/stream/upstreams/{u}/``."""
    return {
        "peers": [stream_peer(p, version, now, clock) for p in up.peers],
        "zombies": up.zombies,
        "zone": up.zone,
    }


def stream_upstreams_of(node, version: int) -> dict:
    now, clock = node.env.now, node.clock
    return {name: stream_upstream(up, version, now, clock) for name, up in stream_upstreams(node).items()}


class UpstreamBodies:
    """Encoded upstream objects (``/http/upstreams/{u}/``, ``/stream/upstreams/{u}/``), reused
    while nothing they show can have changed.

    Monitoring clients poll the same upstream over and over, and rendering every peer costs
    more than the rest of the request. A body is reused only for the same upstream object (a
    reload builds new ones), API version and ``fields``, the same node clock (epoch and offset),
    and the same :attr:`sim.upstream.upstream.Upstream.epoch`, which the model bumps on every change a
    rendered upstream can show (counters, states, configuration, servers added or removed,
    statistics reset, health-check results). What time alone changes is keyed on sim time: while
    a peer is ``unavail``, ``checking`` or ``unhealthy``, or shows a ``downstart``, its state and
    ``downtime`` depend on ``env.now`` (an unavail period ends, downtime accrues), so such a body
    is reused only at the same ``now``. With every peer ``up``, ``down`` or ``draining`` and no
    period open, nothing moves until the model changes (and bumps the epoch): an ``unavail``
    period only starts with a failure or a probe. docs/api-server.md has the details.
    """

    def __init__(self, limit: int = 256):
        self.limit = limit  # entries kept at most (``fields`` comes from clients)
        self.hits = 0
        self.misses = 0
        self._entries: dict[tuple, tuple] = {}

    def upstream(self, up, version: int, now: float, clock, fields: str | None = None) -> bytes:
        """``orjson.dumps(filter_fields(upstream(up, version, now, clock), fields))``."""
        return self._body(upstream, up, version, now, clock, fields)

    def stream_upstream(self, up, version: int, now: float, clock, fields: str | None = None) -> bytes:
        """``orjson.dumps(filter_fields(stream_upstream(up, version, now, clock), fields))``."""
        return self._body(stream_upstream, up, version, now, clock, fields)

    def upstreams(self, ups: dict, version: int, now: float, clock, fields: str | None = None,
                  stream: bool = False) -> bytes:
        """A collection of upstreams (``/http/upstreams/``, ``/stream/upstreams/``), each member
        filtered by ``fields``: the members' bodies joined into one object."""
        render = stream_upstream if stream else upstream
        if not ups:
            return b"{}"
        return b"{" + b",".join(_json_key(name) + self._body(render, up, version, now, clock, fields)
                                for name, up in ups.items()) + b"}"

    def _body(self, render, up, version: int, now: float, clock, fields: str | None) -> bytes:
        key = (render, up.name, version, fields)
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry[0] is up
            and entry[1] == up.epoch
            and entry[2] is clock
            and entry[3] == clock.epoch_ms
            and entry[4] == clock.offset_ms
            and (entry[5] is None or entry[5] == now)
        ):
            self.hits += 1
            return entry[6]
        self.misses += 1
        obj = render(up, version, now, clock)
        # read after rendering: reading a peer's state may close an unavail period that ran out
        epoch = up.epoch
        timed = False
        for p in obj["peers"]:
            if p["state"] in DOWNISH or "downstart" in p:
                timed = True
                break
        body = orjson.dumps(filter_fields(obj, fields))
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (up, epoch, clock, clock.epoch_ms, clock.offset_ms, now if timed else None, body)
        return body


@lru_cache(maxsize=1024)
def _json_key(name: str) -> bytes:
    return orjson.dumps(name) + b":"


def conf_server(p, kind: str, version: int) -> dict:
    """A server as ``.../servers/`` shows it: defaults always written, ``drain`` only when true."""
    out = {"id": p.id, "server": p.name if p.parent is None else p.server}
    if p.service is not None:
        out["service"] = p.service
    out["weight"] = p.weight
    out["max_conns"] = p.max_conns
    out["max_fails"] = p.max_fails
    out["fail_timeout"] = f"{int(p.fail_timeout_ms) // 1000}s"
    out["slow_start"] = f"{int(p.slow_start_ms) // 1000}s"
    if kind == "http":
        out["route"] = p.route or ""
    out["backup"] = p.backup
    out["down"] = p.down
    if kind == "http" and p.drain:
        out["drain"] = True
    if p.parent is not None:
        out["parent"] = str(p.parent)
        out["host"] = p.resolved_host or p.host
    return out


def conf_servers(up, version: int) -> list[dict]:
    return [conf_server(p, up.kind, version) for p in up.conf_peers()]


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


# --------------------------------------------------------------------------------------------------
# Where the model keeps it


def has_stream(node) -> bool:
    """Whether the configuration has a ``stream {}`` block."""
    return node.conf.stream is not None


def has_zone_sync(node) -> bool:
    """Whether a stream server runs ``zone_sync``."""
    stream = node.conf.stream
    return stream is not None and any(s.zone_sync is not None for s in stream.servers)


def caches(node) -> dict:
    """Cache zones by keys_zone name."""
    return node.caches


def limit_reqs(node) -> dict:
    return node.limit_reqs


def limit_conns(node) -> dict:
    return node.limit_conns


def resolvers(node) -> dict:
    return node.resolvers


def stream_server_zones(node) -> dict:
    return node.stream.server_zones if node.stream is not None else {}


def stream_upstreams(node) -> dict:
    """Stream upstreams that have a ``zone`` (the dynamically configurable ones)."""
    return node.stream.upstreams if node.stream is not None else {}


def stream_static_upstreams(node) -> dict:
    return node.stream.static_upstreams if node.stream is not None else {}


def stream_limit_conns(node) -> dict:
    return node.stream_limit_conns


def slab_pools(node) -> dict:
    """Shared memory zone name -> :class:`sim.zones.slabs.SlabPool`, with the zones' current use."""
    return node.slab_pools()


def tls_server_zones(node) -> set[str]:
    """http server zones shared by at least one server with an ``ssl`` listener."""
    http = node.conf.http
    if http is None:
        return set()
    return {s.status_zone for s in http.servers if s.status_zone and s.ssl}


def tls_stream_server_zones(node) -> set[str]:
    stream = node.conf.stream
    if stream is None:
        return set()
    return {s.status_zone for s in stream.servers if s.status_zone and s.ssl}

