"""Pieces the rendered API objects share, and where the node model keeps each collection.

The ``responses`` block (status classes and ``codes``), the ``ssl`` counters (of ``/ssl``, of a
server zone and of a peer), the ``fields`` filter, the unit helpers (durations in milliseconds,
instants at second resolution), and the ``where the model keeps it`` helpers (``caches``,
``stream_server_zones``, ``slab_pools`` ...): the one place that knows where a node holds each
collection. The model is growing, so those read optional attributes defensively and return empty
collections when a part of the model does not exist yet. :mod:`api.render` and
:mod:`api.render_upstream` build on this module; it imports neither.
"""

from __future__ import annotations

from functools import lru_cache

from sim.core.clock import iso_s

_RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


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
# ssl counters


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

