"""Peer selection: NGINX's load-balancing methods as pure choosers.

Models the ``get_peer`` half of nginx's upstream balancers: smooth weighted round robin (the
default), ``least_conn``, ``least_time``, ``hash [consistent]``, ``ip_hash`` and
``random [two [method]]``. The upstream (:mod:`sim.upstream.upstream`) owns the peers, their counters
and their states; it tells a balancer which peers may be used right now through an
``eligible`` predicate (not down, not unavailable, not unhealthy, below ``max_conns``, not
already tried for this request) and asks it to choose one. A balancer keeps no per-request
state: every retry of a request is a fresh ``select`` whose predicate excludes the peers
already tried, so the upstream's list of tried peers plays the part of nginx's ``tried`` bitmap.

The only peer state a balancer writes is the smooth round robin pair ``current_weight`` and
``effective_weight``. Weighted comparisons use ``lb_weight`` (the weight balancing uses now,
lowered by the upstream during ``slow_start``); hash rings and hash/ip_hash walks use the
nominal ``weight``, because nginx forbids ``slow_start`` with them and their mapping must not
move with load. When a hash, ip_hash or random method gives up (21 unusable picks) it falls
back to round robin over the same peers, as nginx does. docs/balancing.md describes each
algorithm and the places where this model departs from nginx.
"""

from __future__ import annotations

import bisect
import ipaddress
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol

from sim.core.clock import parse_duration
from sim.core.rng import Batched

__all__ = [
    "METHODS",
    "Balancer",
    "ConsistentHash",
    "Hash",
    "IpHash",
    "LeastConn",
    "LeastTime",
    "PeerLike",
    "Random",
    "RoundRobin",
    "least_time_eta",
    "make_balancer",
    "smooth_weighted_round_robin",
]

METHODS = ("round_robin", "least_conn", "least_time", "hash", "ip_hash", "random")

#: least_time modes and the peer attribute (an EMA in ms) each one ranks by.
LEAST_TIME_ATTRS = {
    "header": "header_time",
    "last_byte": "response_time",
    "connect": "connect_time",
    "first_byte": "first_byte_time",
}

#: nginx gives up hashing (or random picking) after this many unusable picks: its counter is
#: checked with ``++tries > 20``, so 21 picks are made before round robin takes over.
MAX_TRIES = 20

#: Points per unit of weight on the consistent-hash ring (Cache::Memcached::Fast's ketama_points).
KETAMA_POINTS = 160

_LEAST_TIME_CAP_MS = 5000
_LEAST_TIME_CLUSTER_MS = 20
_SECOND_MS = parse_duration("1s")


class PeerLike(Protocol):
    """What a balancer reads (and, for round robin, writes) on a peer.

    Stream peers also carry ``connect_time`` and ``first_byte_time`` (EMAs in ms, ``None``
    before the first sample); they are read by name only in those least_time modes. A peer may
    offer ``inflight_time(now) -> float | None`` for ``least_time ... inflight`` and
    ``checked`` (sim ms) for the least_time slow-peer halving; both are optional.
    """

    weight: int  # nominal configured weight: hash rings, hash and ip_hash walks
    lb_weight: int  # weight used for balancing now (< weight during slow_start), >= 1
    effective_weight: int  # smooth round robin state, lowered by the upstream on failures
    current_weight: int  # smooth round robin state
    active: int  # current connections
    header_time: float | None
    response_time: float | None
    host: str
    port: int | None
    address: str  # the server's "host:port" (or "unix:/path") as the upstream names it


Eligible = Callable[[PeerLike], bool]


class Balancer(Protocol):
    """A load-balancing method bound to one upstream group."""

    method: str

    def select(
        self, peers: Sequence[PeerLike], eligible: Eligible, key: str | bytes | None, now: float
    ) -> PeerLike | None:
        """Choose one eligible peer of ``peers`` (configuration order), or None if none is.

        ``key`` is the evaluated ``hash`` key or, for ip_hash, the client address; other
        methods ignore it. ``now`` is sim time in ms.
        """
        ...

    def rebuild(self, peers: Sequence[PeerLike]) -> None:
        """Recompute derived state (the consistent-hash ring) after servers were added,
        removed or re-weighted."""
        ...


# ---------------------------------------------------------------------------------------------
# Smooth weighted round robin: the default, and every other method's tie-break and fallback


def smooth_weighted_round_robin(peers: Sequence[PeerLike], eligible: Eligible, start: int = 0) -> PeerLike | None:
    """nginx's smooth weighted round robin step over the eligible peers (from index ``start``).

    Every eligible peer's ``current_weight`` grows by its ``effective_weight``, which itself
    creeps back towards ``lb_weight`` by one per selection after a failure lowered it; the peer
    with the highest ``current_weight`` (the first on ties) wins and pays back the total. The
    other methods break ties with this same step, restricted to the tied peers.
    """
    best = None
    best_current = 0
    total = 0
    for i in range(start, len(peers)):
        peer = peers[i]
        if not eligible(peer):
            continue
        effective = peer.effective_weight
        current = peer.current_weight + effective
        peer.current_weight = current
        total += effective
        if effective < peer.lb_weight:
            peer.effective_weight = effective + 1
        if best is None or current > best_current:
            best = peer
            best_current = current
    if best is not None:
        best.current_weight = best_current - total
    return best


def _round_robin_among_ties(
    candidates: Sequence[PeerLike], scores: Sequence[int], best: int
) -> PeerLike:
    """The smooth round robin step restricted to the candidates whose weighted score equals
    the best one's (nginx walks from the first tied peer onwards)."""
    lead_score = scores[best]
    lead_weight = candidates[best].lb_weight
    tied = [
        candidates[i] for i in range(best, len(candidates))
        if scores[i] * lead_weight == lead_score * candidates[i].lb_weight
    ]
    return smooth_weighted_round_robin(tied, _always)


def _always(_peer) -> bool:
    return True


class RoundRobin:
    """The default method (no balancing directive)."""

    method = "round_robin"

    def select(self, peers, eligible, key=None, now=0.0):
        return smooth_weighted_round_robin(peers, eligible)

    def rebuild(self, peers) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# least_conn and least_time: least weighted score, ties by round robin


class LeastConn:
    """``least_conn``: the fewest active connections per unit of weight.

    Compared as ``a.active * b.lb_weight < b.active * a.lb_weight`` (no division); peers that
    tie with the best share by smooth round robin, and only they have their weights stepped.
    """

    method = "least_conn"

    def select(self, peers, eligible, key=None, now=0.0):
        best = None
        best_active = 0
        best_weight = 1
        best_index = 0
        many = False
        for i, peer in enumerate(peers):
            if not eligible(peer):
                continue
            active = peer.active
            weight = peer.lb_weight
            if best is None or active * best_weight < best_active * weight:
                best, best_active, best_weight, best_index = peer, active, weight, i
                many = False
            elif active * best_weight == best_active * weight:
                many = True
        if best is None or not many:
            return best
        return smooth_weighted_round_robin(
            peers, lambda p: p.active * best_weight == best_active * p.lb_weight and eligible(p), best_index
        )

    def rebuild(self, peers) -> None:
        pass


def _peer_inflight_time(peer, now: float) -> float | None:
    inflight_time = getattr(peer, "inflight_time", None)
    return inflight_time(now) if inflight_time is not None else None


def least_time_eta(
    peer: PeerLike,
    now: float,
    attr: str = "header_time",
    inflight_time_of: Callable[[PeerLike, float], float | None] | None = None,
    fail_timeout_ms_of: Callable[[PeerLike], float] | None = None,
) -> int:
    """nginx's least_time estimate for one peer: ``rt * (1 + active)``, in ms.

    ``rt`` is the peer's average named by ``attr`` (0 before any sample, truncated to whole
    ms as nginx keeps it). With ``fail_timeout_ms_of`` and a ``checked`` time on the peer, ``rt``
    is halved once per ``fail_timeout + 1`` whole seconds since then, if more than
    ``fail_timeout`` passed (nginx's second to give slow peers another chance). With
    ``inflight_time_of``, the average age of incomplete requests raises ``rt`` if larger. Then
    ``rt`` is capped at 5000 or lifted to the next multiple of 20 above it, so that peers with
    close averages tie and share by round robin.
    """
    rt = getattr(peer, attr, None)
    rt = int(rt) if rt else 0
    if fail_timeout_ms_of is not None and rt:
        checked = getattr(peer, "checked", None)
        if checked is not None:
            # nginx does this arithmetic in whole seconds (time_t)
            fail_timeout = int(fail_timeout_ms_of(peer) // _SECOND_MS)
            elapsed = int(now // _SECOND_MS) - int(checked // _SECOND_MS)
            if elapsed > fail_timeout:
                rt >>= elapsed // (fail_timeout + 1)
    if inflight_time_of is not None:
        inflight = inflight_time_of(peer, now)
        if inflight and inflight > rt:
            rt = int(inflight)
    if rt > _LEAST_TIME_CAP_MS:
        rt = _LEAST_TIME_CAP_MS
    else:
        rt += _LEAST_TIME_CLUSTER_MS - rt % _LEAST_TIME_CLUSTER_MS
    return rt * (1 + peer.active)


class LeastTime:
    """``least_time header|last_byte|connect|first_byte [inflight]``.

    The lowest :func:`least_time_eta`, weighted like least_conn
    (``eta_a * b.lb_weight < eta_b * a.lb_weight``); ties share by smooth round robin.
    """

    method = "least_time"

    def __init__(
        self,
        mode: str = "header",
        inflight: bool = False,
        inflight_time_of: Callable[[PeerLike, float], float | None] | None = None,
        fail_timeout_ms_of: Callable[[PeerLike], float] | None = None,
    ):
        if mode not in LEAST_TIME_ATTRS:
            raise ValueError(f"unknown least_time mode {mode!r}")
        self.mode = mode
        self.inflight = inflight
        self._attr = LEAST_TIME_ATTRS[mode]
        self._inflight_time_of = (inflight_time_of or _peer_inflight_time) if inflight else None
        self._fail_timeout_ms_of = fail_timeout_ms_of

    def eta(self, peer: PeerLike, now: float) -> int:
        return least_time_eta(peer, now, self._attr, self._inflight_time_of, self._fail_timeout_ms_of)

    def select(self, peers, eligible, key=None, now=0.0):
        candidates = []
        scores = []
        best = -1
        best_eta = 0
        best_weight = 1
        many = False
        for peer in peers:
            if not eligible(peer):
                continue
            eta = self.eta(peer, now)
            weight = peer.lb_weight
            if best < 0 or eta * best_weight < best_eta * weight:
                best, best_eta, best_weight = len(candidates), eta, weight
                many = False
            elif eta * best_weight == best_eta * weight:
                many = True
            candidates.append(peer)
            scores.append(eta)
        if best < 0:
            return None
        if not many:
            return candidates[best]
        return _round_robin_among_ties(candidates, scores, best)

    def rebuild(self, peers) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# hash, hash consistent, ip_hash


def _key_bytes(key: str | bytes | None) -> bytes:
    if key is None:
        return b""
    return key.encode() if isinstance(key, str) else bytes(key)


def _walk(peers: Sequence[PeerLike], w: int) -> PeerLike:
    """The peer whose slice of ``[0, total nominal weight)`` holds ``w``."""
    for peer in peers:
        weight = peer.weight
        if w < weight:
            return peer
        w -= weight
    return peers[-1]


class Hash:
    """``hash key``: Cache::Memcached-compatible modulo hashing over nominal weights.

    The n-th pick adds ``(crc32(str(n) + key) >> 16) & 0x7fff`` (no prefix for n = 0) to a
    running sum and walks the weights with ``sum % total_weight``; an unusable peer leads to
    the next pick, and after 21 picks, an empty key or a single server, to round robin.
    """

    method = "hash"

    def select(self, peers, eligible, key=None, now=0.0):
        data = _key_bytes(key)
        if not data or len(peers) < 2:
            return smooth_weighted_round_robin(peers, eligible)
        total = 0
        for peer in peers:
            total += peer.weight
        running = 0
        for rehash in range(MAX_TRIES + 1):
            crc = zlib.crc32(data, zlib.crc32(b"%d" % rehash)) if rehash else zlib.crc32(data)
            running += (crc >> 16) & 0x7FFF
            peer = _walk(peers, running % total)
            if eligible(peer):
                return peer
        return smooth_weighted_round_robin(peers, eligible)

    def rebuild(self, peers) -> None:
        pass


def _split_server(address: str) -> tuple[bytes, bytes]:
    """Host and port text of a server name, as nginx splits it for the ketama ring: a
    ``unix:`` path has no port; otherwise the port is the all-digit tail after the last colon."""
    if address[:5].lower() == "unix:":
        return address[5:].encode(), b""
    head, sep, tail = address.rpartition(":")
    if sep and tail.isdigit():
        return head.encode(), tail.encode()
    return address.encode(), b""


class ConsistentHash:
    """``hash key consistent``: a ketama ring compatible with Cache::Memcached::Fast.

    Each server contributes ``160 * weight`` points; point j's hash is
    ``crc32(host, "\\0", port, previous point's hash as 4 little-endian bytes)`` (0 before the
    first). A key goes to the first point at or after ``crc32(key)`` (wrapping); the eligible
    peers named by that point's server share by round robin (one, unless a name resolved to
    several addresses); with none, the next point is tried, up to 21 points, then round robin.
    Adding or removing one server moves only the keys that land on its points.
    """

    method = "hash"

    def __init__(self):
        self._hashes: list[int] = []
        self._servers: list[str] = []
        self._built_for = -1

    def rebuild(self, peers) -> None:
        points: list[tuple[int, int, str]] = []
        for order, peer in enumerate(peers):
            host, port = _split_server(peer.address)
            base = zlib.crc32(port, zlib.crc32(b"\0", zlib.crc32(host)))
            previous = 0
            for _ in range(KETAMA_POINTS * peer.weight):
                point = zlib.crc32(previous.to_bytes(4, "little"), base)
                points.append((point, order, peer.address))
                previous = point
        points.sort()
        hashes: list[int] = []
        servers: list[str] = []
        for point, _order, server in points:
            # equal hashes keep one point, the server configured first
            if not hashes or hashes[-1] != point:
                hashes.append(point)
                servers.append(server)
        self._hashes = hashes
        self._servers = servers
        self._built_for = len(peers)

    def select(self, peers, eligible, key=None, now=0.0):
        data = _key_bytes(key)
        if not data or len(peers) < 2:
            return smooth_weighted_round_robin(peers, eligible)
        if self._built_for != len(peers):
            self.rebuild(peers)
        hashes = self._hashes
        count = len(hashes)
        start = bisect.bisect_left(hashes, zlib.crc32(data))
        for step in range(MAX_TRIES + 1):
            server = self._servers[(start + step) % count]
            best = smooth_weighted_round_robin(peers, lambda p, s=server: p.address == s and eligible(p))
            if best is not None:
                return best
        return smooth_weighted_round_robin(peers, eligible)


@lru_cache(maxsize=4096)
def ip_hash_bytes(client: str | bytes | None) -> bytes:
    """The bytes ip_hash hashes: the first three octets of an IPv4 address, all sixteen of an
    IPv6 one, and three zero bytes for anything else (nginx's stand-in for unix sockets)."""
    if isinstance(client, bytes):
        client = client.decode(errors="replace")
    try:
        address = ipaddress.ip_address(client) if client else None
    except ValueError:
        address = None
    if address is None:
        return b"\0\0\0"
    return address.packed[:3] if address.version == 4 else address.packed


class IpHash:
    """``ip_hash``: the client's /24 (IPv4) or whole IPv6 address picks the peer.

    ``hash`` starts at 89 and takes each address byte as ``hash = (hash * 113 + byte) % 6271``;
    ``hash % total_weight`` walks the nominal weights. An unusable peer continues the same
    running hash over the bytes again; after 21 picks round robin takes over.
    """

    method = "ip_hash"

    def select(self, peers, eligible, key=None, now=0.0):
        if len(peers) < 2:
            return smooth_weighted_round_robin(peers, eligible)
        total = 0
        for peer in peers:
            total += peer.weight
        octets = ip_hash_bytes(key)
        running = 89
        for _ in range(MAX_TRIES + 1):
            for byte in octets:
                running = (running * 113 + byte) % 6271
            peer = _walk(peers, running % total)
            if eligible(peer):
                return peer
        return smooth_weighted_round_robin(peers, eligible)

    def rebuild(self, peers) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# random [two [least_conn | least_time=...]]


class Random:
    """``random [two [method]]``: a weighted random peer, or the better of two.

    A pick draws ``x`` uniformly in ``[0, total lb_weight)`` (over all peers, usable or not, as
    nginx's ranges are) and walks the weights. Without ``two`` the first usable pick wins. With
    ``two`` a second, different usable pick is drawn and the two compared: by active
    connections per weight (``least_conn``, the default) or by :func:`least_time_eta`; the
    second pick wins ties. Every draw, even the first good one of a pair, counts towards the
    21 after which round robin takes over.
    """

    method = "random"

    def __init__(self, rng, two: bool = False, least_time: LeastTime | None = None):
        self._uniform = Batched(lambda n: rng.random(n))
        self.two = two
        self._least_time = least_time

    def _peek(self, peers, total: int):
        x = int(self._uniform() * total)
        for peer in peers:
            weight = peer.lb_weight
            if x < weight:
                return peer
            x -= weight
        return peers[-1]

    def select(self, peers, eligible, key=None, now=0.0):
        if len(peers) < 2:
            return smooth_weighted_round_robin(peers, eligible)
        total = 0
        for peer in peers:
            total += peer.lb_weight
        if not self.two:
            for _ in range(MAX_TRIES + 1):
                peer = self._peek(peers, total)
                if eligible(peer):
                    return peer
            return smooth_weighted_round_robin(peers, eligible)
        first = None
        for _ in range(MAX_TRIES + 1):
            peer = self._peek(peers, total)
            if peer is first or not eligible(peer):
                continue
            if first is None:
                first = peer
                continue
            return first if self._worse(peer, first, now) else peer
        return smooth_weighted_round_robin(peers, eligible)

    def _worse(self, second, first, now: float) -> bool:
        """Whether ``second`` is strictly worse than ``first`` (weighted comparison)."""
        if self._least_time is None:
            return second.active * first.lb_weight > first.active * second.lb_weight
        eta = self._least_time.eta
        return eta(second, now) * first.lb_weight > eta(first, now) * second.lb_weight

    def rebuild(self, peers) -> None:
        pass


# ---------------------------------------------------------------------------------------------


def make_balancer(
    method: str,
    *,
    rng=None,
    hash_consistent: bool = False,
    least_time_mode: str | None = None,
    least_time_inflight: bool = False,
    random_two: bool = False,
    random_method: str | None = None,
    fail_timeout_ms_of: Callable[[PeerLike], float] | None = None,
    inflight_time_of: Callable[[PeerLike, float], float | None] | None = None,
) -> Balancer:
    """The balancer for one upstream, from its ``UpstreamConf`` fields.

    ``rng`` (a numpy Generator, e.g. ``streams.get("node1/upstream/backend/lb")``) is required
    for ``random``. ``random_method`` is ``None``/``"least_conn"`` or ``"least_time=<mode>"``.
    ``fail_timeout_ms_of(peer)`` enables least_time's halving of stale averages (it needs a
    ``checked`` time on the peer); ``inflight_time_of(peer, now)`` replaces the peer's own
    ``inflight_time(now)`` for ``inflight``.
    """
    if method == "round_robin":
        return RoundRobin()
    if method == "least_conn":
        return LeastConn()
    if method == "least_time":
        return LeastTime(
            least_time_mode or "header", least_time_inflight, inflight_time_of, fail_timeout_ms_of
        )
    if method == "hash":
        return ConsistentHash() if hash_consistent else Hash()
    if method == "ip_hash":
        return IpHash()
    if method == "random":
        if rng is None:
            raise ValueError("random balancing needs an rng stream")
        least_time = None
        if random_two and random_method not in (None, "least_conn"):
            prefix, _, mode = random_method.partition("=")
            if prefix != "least_time":
                raise ValueError(f"unknown random two method {random_method!r}")
            least_time = LeastTime(mode, least_time_inflight, inflight_time_of, fail_timeout_ms_of)
        return Random(rng, two=random_two, least_time=least_time)
    raise ValueError(f"unknown balancing method {method!r}")
