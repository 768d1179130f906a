"""Rendered upstreams: peers and upstreams of ``/http/upstreams/`` and ``/stream/upstreams/``.

The statistics objects of both kinds of upstream (their peers written out field by field, since
this is the hottest path of the API), :class:`UpstreamBodies`, which keeps encoded upstream
objects and reuses them while the model has not changed them, and the servers as
``.../servers/`` shows them (:func:`conf_server`). :mod:`api.render` re-exports all of it.
"""

from __future__ import annotations

from functools import lru_cache
from operator import attrgetter, ne

import orjson

from sim.upstream.peer import CHANGE_KEY
from sim.upstream.upstream import DOWNISH

from . import versions as V
from .render_common import _CODE_TEXT, _iso_s, _ms, filter_fields, ssl, stream_upstreams

_HIST_KEYS = V.fields("response_time_hist_buckets", V.LATEST)


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
    out = {"peers": [peer(p, version, now, clock) for p in up.peers]}
    out.update(_upstream_tail(up))
    return out


def _upstream_tail(up) -> dict:
    """The fields of ``/http/upstreams/{u}/`` after ``peers``."""
    out = {"keepalive": up.keepalive}
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
    out = {"peers": [stream_peer(p, version, now, clock) for p in up.peers]}
    out.update(_stream_upstream_tail(up))
    return out


def _stream_upstream_tail(up) -> dict:
    """The fields of ``/stream/upstreams/{u}/`` after ``peers``."""
    return {"zombies": up.zombies, "zone": up.zone}


def stream_upstreams_of(node, version: int) -> dict:
    now, clock = node.env.now, node.clock
    return {name: stream_upstream(up, version, now, clock) for name, up in stream_upstreams(node).items()}


#: Every attribute of an http peer that :func:`peer` shows or that its state, ``downtime`` and
#: ``downstart`` are computed from (:meth:`sim.upstream.peer.Peer.state_at` and friends): what
#: the peer's change key (:data:`sim.upstream.peer.CHANGE_KEY`) must move with.
#: tests/api/test_http_upstream_reuse.py checks that rendering a peer reads nothing else, and
#: tests/sim/test_peer_changes.py that the key moves whenever one of these does.
PEER_KEY_FIELDS = ("id", "server", "service", "name", "backup", "weight", "down", "drain", "hc_state",
                   "max_fails", "_fails", "checked", "fail_timeout_ms", "_unavail_until", "_probing",
                   "_down_since", "_downtime", "slow_start_ms", "active", "ssl", "max_conns", "requests",
                   "header_time", "response_time", "hist_sum", "sent", "received", "fails", "unavail",
                   "hc_checks", "hc_fails", "hc_unhealthy", "hc_last_passed", "selected",
                   "responses", "codes", "hist")
#: The same for a stream peer (:func:`stream_peer`). The stream side moves a stream peer's
#: counters directly, so these values themselves are what is compared for a stream peer.
STREAM_PEER_KEY_FIELDS = ("id", "server", "service", "name", "backup", "weight", "down", "drain", "hc_state",
                          "max_fails", "_fails", "checked", "fail_timeout_ms", "_unavail_until", "_probing",
                          "_down_since", "_downtime", "slow_start_ms", "active", "ssl", "max_conns",
                          "connections", "connect_time", "first_byte_time", "response_time", "sent",
                          "received", "fails", "unavail", "hc_checks", "hc_fails", "hc_unhealthy",
                          "hc_last_passed", "selected")
_peer_key = attrgetter(*CHANGE_KEY)
_stream_peer_values = attrgetter(*STREAM_PEER_KEY_FIELDS)


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

    When the epoch has moved (under traffic it moves with every request), most peers are still
    as they were: one request changes one peer. Each peer's encoded object is kept too, with the
    peer's change key it was rendered at (:data:`sim.upstream.peer.CHANGE_KEY`: the peer's change
    counter; for a stream peer, every value of :data:`STREAM_PEER_KEY_FIELDS`), and reused while
    the key is the same, under the same rule for time (a down-ish peer only at the same ``now``);
    comparing one integer per peer costs a fraction of rendering and encoding it. A peer with ``ssl`` counters is always rendered (they
    are an object of their own). The body is then the peers' pieces joined, byte for byte what
    encoding the whole object gives; when no piece changed, the joined pieces are reused too.
    With ``fields`` the whole object is rendered.
    """

    def __init__(self, limit: int = 256):
        self.limit = limit  # entries kept at most (``fields`` comes from clients)
        self.hits = 0
        self.misses = 0
        #: peers rendered afresh and peers reused, on the misses without ``fields``
        self.peer_renders = 0
        self.peer_reuses = 0
        self._entries: dict[tuple, tuple] = {}
        self._peers: dict[tuple, tuple] = {}

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
        if fields is None:
            body, timed = self._joined(render, up, version, now, clock)
        else:
            obj = render(up, version, now, clock)
            timed = False
            for p in obj["peers"]:
                if p["state"] in DOWNISH or "downstart" in p:
                    timed = True
                    break
            body = orjson.dumps(filter_fields(obj, fields))
        # read after rendering: reading a peer's state may close an unavail period that ran out
        epoch = up.epoch
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (up, epoch, clock, clock.epoch_ms, clock.offset_ms, now if timed else None, body)
        return body

    def _joined(self, render, up, version: int, now: float, clock) -> tuple[bytes, bool]:
        """The whole object from its peers' pieces (reused where a peer is unchanged) and the
        rest encoded afresh; and whether any peer depends on ``now``.

        What is kept for an upstream: the peers (in order), their change keys as rendered, the
        sim time each down-ish one was rendered at (None for the others), their encoded pieces
        and those joined. The keys of all peers are read and compared in two C-level passes
        (``map``); only the peers whose keys differ are rendered again. A server removed or
        added renders the upstream's peers afresh once."""
        if render is upstream:
            render_peer, key_of, tail = peer, _peer_key, _upstream_tail
        else:
            render_peer, key_of, tail = stream_peer, _stream_peer_values, _stream_upstream_tail
        pkey = (render, up.name, version)
        held = self._peers.get(pkey)
        if held is None and len(self._peers) >= self.limit:
            self._peers.clear()
        peers = up.peers
        current = list(map(key_of, peers))
        # ``single`` (one primary, no backups) decides whether a peer can be unavailable at all
        stamp = (up, clock, clock.epoch_ms, clock.offset_ms, up.single)
        if held is not None and held[0] == stamp and held[1] == peers:
            _, _, kept, at, pieces, joined = held
            changed = list(map(ne, current, kept))
            timed = at.count(None) != len(at)
            if timed:
                for i, t in enumerate(at):
                    if t is not None and t != now:
                        changed[i] = True
            if True not in changed:
                self.peer_reuses += len(peers)
                return joined + orjson.dumps(tail(up))[1:], timed
        else:
            changed = [True] * len(peers)
            kept, at, pieces = [None] * len(peers), [None] * len(peers), [b""] * len(peers)
            # kept (and then updated in place, a peer's three entries together)
            held = self._peers[pkey] = [stamp, list(peers), kept, at, pieces, b""]
        rendered = 0
        i = -1
        while True:
            try:
                i = changed.index(True, i + 1)
            except ValueError:
                break
            p = peers[i]
            obj = render_peer(p, version, now, clock)
            rendered += 1
            piece = orjson.dumps(obj)
            at[i] = now if obj["state"] in DOWNISH or "downstart" in obj else None
            # the key after rendering (reading the state may have closed a period); ssl
            # counters are an object of their own: such a peer is rendered every time
            kept[i] = key_of(p) if p.ssl is None else None
            pieces[i] = piece
        self.peer_renders += rendered
        self.peer_reuses += len(peers) - rendered
        joined = held[5] = b'{"peers":[' + b",".join(pieces) + b"],"
        timed = at.count(None) != len(at)
        return joined + orjson.dumps(tail(up))[1:], timed


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
