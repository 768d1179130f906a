"""Request and connection limiting: ``limit_req`` and ``limit_conn`` zones as nginx runs them.

``limit_req`` is a leaky bucket per key. Each key's state keeps ``excess`` in thousandths of a
request and the time ``last`` it was updated. A request arriving ``ms`` milliseconds later
computes ``excess - rate * ms / 1000 + 1000`` (``rate`` in thousandths of a request per second,
the result never below 0); above ``burst * 1000`` it is rejected and the state is left as it
was, otherwise the state takes the new value and the request waits ``(excess - delay * 1000) /
rate`` seconds when that is positive (``nodelay`` makes ``delay`` infinite). A new key starts at
0, so with ``rate=1r/s burst=2`` three immediate requests get through and the fourth is
rejected. All arithmetic is integer and in whole milliseconds, as in nginx.

Several ``limit_req`` in one location are examined in order (:func:`limit_req`): the first
that rejects ends the walk and leaves every bucket untouched; otherwise all buckets take the
request and the longest of their delays applies. ``limit_req_dry_run`` counts what would have
happened (``delayed_dry_run``, ``rejected_dry_run``) and lets the request through at once.

``limit_conn`` counts a key's connections while they last (:func:`limit_conn`); at ``number``
further ones are rejected.

States live in the zone's shared memory (:class:`sim.zones.slabs.SlabPool`), sized as nginx's tree
nodes are on a 64-bit build. When a new ``limit_req`` state finds no memory, nginx drops the
least recently used state and tries once more; only then is the request rejected. Idle,
drained ``limit_req`` states (60 s) are dropped as new ones are created. ``limit_conn`` states
exist only while their key has connections. A request whose key is empty is not accounted.
Counters carry API v6 names.

A ``limit_req_zone ... sync`` zone offers zone_sync the hooks a keyval zone does: every state a
request changes queues its key (coalesced until the next poll); a record carries the bucket's
``excess`` and the instant of its change on the origin node's clock; a received record replaces
the local state when its ``(timestamp, origin)`` is greater (last write wins), its ``last``
read back on the receiver's clock. docs/zone-sync.md ("limit_req zones") says why.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from sim.conf.config import LimitConnConf, LimitConnZoneConf, LimitReqConf, LimitReqZoneConf
from sim.zones.slabs import SlabPool

PASSED = "passed"
DELAYED = "delayed"
REJECTED = "rejected"
DELAYED_DRY_RUN = "delayed_dry_run"
REJECTED_DRY_RUN = "rejected_dry_run"

#: A limit_req state is an rbtree node head (32 bytes up to its colour byte) followed by the
#: module's node (48 bytes up to the key) and the key itself.
LIMIT_REQ_STATE_BYTES = 80
#: A limit_conn state: the same node head, then colour, length and connection count (4 bytes).
LIMIT_CONN_STATE_BYTES = 36
#: States idle this long whose bucket has drained may be dropped.
LIMIT_REQ_IDLE_MS = 60_000
MAX_LIMIT_REQ_KEY = 65535  # longer keys are logged and not accounted
MAX_LIMIT_CONN_KEY = 255
#: Fixed part of one limit_req record on the zone_sync wire: key length, excess, timestamp.
LIMIT_REQ_WIRE_OVERHEAD = 16

_NO_DELAY = float("inf")  # nodelay


def _key_bytes(variable: str, key: str) -> int:
    """Bytes the key occupies in a state: ``$binary_remote_addr`` is 4 (IPv4) or 16 (IPv6)."""
    if variable == "$binary_remote_addr":
        return 16 if ":" in key else 4
    return len(key.encode())


class _ReqState:
    __slots__ = ("excess", "last", "handle", "stamp", "origin")

    def __init__(self, handle: int, last: int | None):
        self.excess = 0
        # None: created by a limit that was not the last one of its location. nginx stores 0
        # there, so the next look treats the bucket as long drained.
        self.last = last
        self.handle = handle
        # zone_sync: when the bucket last changed, on the clock of the node that changed it
        self.stamp = 0.0
        self.origin = ""


@dataclass(frozen=True, slots=True)
class LimitReqRecord:
    """One bucket on the zone_sync wire: ``value`` is its excess (thousandths of a request),
    ``timestamp`` the origin node's clock (ms) when it changed. States never expire by time."""

    key: str
    value: int
    timestamp: float
    origin: str
    wire_bytes: int
    expire_at: None = None


class LimitReqZone:
    """One ``limit_req_zone``: per-key leaky buckets, their memory, and the API v6 counters."""

    def __init__(
        self, conf: LimitReqZoneConf, slab: SlabPool | None = None, *, clock=None, node_name: str = ""
    ):
        self.conf = conf
        self.name = conf.name
        #: the node's clock (:class:`sim.core.clock.NodeClock`) stamps synced changes; without one
        #: the stamps are sim milliseconds
        self.clock = clock
        self.node_name = node_name
        self._pending: dict[str, None] = {}  # zone_sync output queue, an insertion-ordered set
        #: Records too large for a zone_sync buffer, skipped by :meth:`drain_pending`.
        self.skipped_records = 0
        # nginx keeps the rate as an integer number of thousandths of a request per second,
        # so 1r/m becomes 16, not 16.67.
        self.rate = max(1, int(conf.rate_per_s * 1000 + 1e-9))
        self.slab = slab if slab is not None else SlabPool(conf.size)
        # Least recently used first; a lookup moves its key to the end.
        self._states: OrderedDict[str, _ReqState] = OrderedDict()
        self.passed = 0
        self.delayed = 0
        self.rejected = 0
        self.delayed_dry_run = 0
        self.rejected_dry_run = 0
        # The module's own shared context (tree, sentinel, LRU queue) and the zone's name for
        # log messages come from the same pool, so they show in /slabs/ as in nginx.
        self.slab.alloc(80)
        self.slab.alloc(len(' in limit_req zone ""') + 1 + len(conf.name))

    def check(self, key: str, now_ms: float, limit: LimitReqConf) -> tuple[str, float]:
        """One request under this zone alone: ``(outcome, delay_ms)``, counted."""
        return limit_req([(self, key, limit)], now_ms)

    def reset_statistics(self) -> None:
        """DELETE ``/http/limit_reqs/{zone}``."""
        self.passed = self.delayed = self.rejected = 0
        self.delayed_dry_run = self.rejected_dry_run = 0

    def __len__(self) -> int:
        return len(self._states)

    def state(self, key: str) -> tuple[int, int | None] | None:
        """``(excess, last)`` of a key, or None when the zone holds no state for it."""
        s = self._states.get(key)
        return None if s is None else (s.excess, s.last)

    # -- zone_sync hooks (zones with ``sync``) ---------------------------------------------------

    @property
    def records_total(self) -> int:
        """States stored on this node (local and received): zone_sync's ``records_total``."""
        return len(self._states)

    @property
    def records_pending(self) -> int:
        """Keys waiting in the zone_sync output queue."""
        return len(self._pending)

    def _clock_ms(self, sim_ms: int) -> float:
        c = self.clock
        return float(sim_ms) if c is None else c.epoch_ms + sim_ms + c.offset_ms

    def _changed(self, key: str, state: _ReqState, now: int) -> None:
        """A request changed ``key``'s bucket here: stamp it and queue it (coalesced)."""
        if not self.conf.sync:
            return
        state.stamp = self._clock_ms(now)
        state.origin = self.node_name
        self._pending[key] = None  # an already queued key keeps its place

    def _record(self, key: str, state: _ReqState) -> LimitReqRecord:
        wire = LIMIT_REQ_WIRE_OVERHEAD + len(key.encode())
        return LimitReqRecord(key, state.excess, state.stamp, state.origin, wire)

    def drain_pending(self, max_bytes: int, max_record_bytes: int | None = None) -> list[LimitReqRecord]:
        """Pop queued records in order while they fit ``max_bytes`` (as the keyval zone does);
        a record bigger than ``max_record_bytes`` is dropped and counted in ``skipped_records``."""
        limit = max_bytes if max_record_bytes is None else max_record_bytes
        out: list[LimitReqRecord] = []
        left = max_bytes
        for key in list(self._pending):
            state = self._states.get(key)
            if state is None:  # dropped for memory since it was queued
                del self._pending[key]
                continue
            rec = self._record(key, state)
            if rec.wire_bytes > limit:
                del self._pending[key]
                self.skipped_records += 1
                continue
            if rec.wire_bytes > left:
                break
            del self._pending[key]
            out.append(rec)
            left -= rec.wire_bytes
        return out

    def expiries(self, records: list[LimitReqRecord]) -> tuple:
        """Buckets do not expire by time: their messages carry no expiry instants."""
        return ()

    def snapshot_expiring(self) -> tuple[list[LimitReqRecord], None]:
        """:meth:`snapshot`, and no expiry instants (buckets do not expire by time)."""
        return self.snapshot(), None

    def apply_records(self, records, expiries: tuple, written_at: float) -> int:
        """Merge the buckets of one zone_sync message (``expiries`` is always empty); how many
        changed the zone."""
        return sum(
            self.apply_remote(r.key, r.value, r.timestamp, r.origin) in ("inserted", "updated") for r in records
        )

    def apply_remote(
        self, key: str, value: int, timestamp: float, origin: str, expire_in_ms: float | None = None
    ) -> str:
        """Merge a bucket received from ``origin``; never queues it for sending.

        Last write wins by ``(timestamp, origin)``, as for keyval pairs: the greater one replaces
        the local excess, and ``last`` becomes the remote change's instant read on this node's
        clock, so the bucket keeps leaking from when the origin changed it. Returns
        ``"inserted"``, ``"updated"``, ``"ignored"`` or ``"no_memory"``.
        """
        if not key or len(key) > MAX_LIMIT_REQ_KEY:
            return "ignored"
        c = self.clock
        last = int(timestamp if c is None else timestamp - c.epoch_ms - c.offset_ms)
        state = self._states.get(key)
        if state is not None:
            if state.last is not None and (timestamp, origin) <= (state.stamp, state.origin):
                return "ignored"
            self._states.move_to_end(key)
            result = "updated"
        else:
            now = int(c.env.now) if c is not None else last
            handle = self._alloc(key, now)
            if handle is None:
                return "no_memory"
            state = self._states[key] = _ReqState(handle, last)
            result = "inserted"
        state.excess = int(value)
        state.last = last
        state.stamp = timestamp
        state.origin = origin
        self._pending.pop(key, None)  # the bucket now holds another node's write
        return result

    def snapshot(self) -> list[LimitReqRecord]:
        """Every bucket a request has touched, local and received, for a (re)connected node."""
        return [self._record(k, s) for k, s in self._states.items() if s.last is not None]

    # -- nginx's lookup / account / expire ------------------------------------------------------

    def _leak(self, state: _ReqState, now: int) -> tuple[int, int]:
        """The bucket with one more request in it at ``now``, and the elapsed milliseconds."""
        if state.last is None:
            return 0, 1
        ms = max(0, now - state.last)
        return max(0, state.excess - self.rate * ms // 1000 + 1000), ms

    def _alloc(self, key: str, now: int):
        """Slab memory for a new bucket: expired buckets go first, then, if the zone is still
        full, the oldest ones as nginx forces it; None when even that leaves no room."""
        size = LIMIT_REQ_STATE_BYTES + _key_bytes(self.conf.key, key)
        self._expire(now, force=False)
        handle = self.slab.alloc(size)
        if handle is None:
            self._expire(now, force=True)
            handle = self.slab.alloc(size)
        return handle

    def _lookup(self, key: str, now: int, limit: LimitReqConf, account: bool) -> tuple[str, int]:
        """``("ok"|"again"|"busy"|"error", excess)``; "ok" has committed the state already."""
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
            excess, ms = self._leak(state, now)
            if excess > limit.burst * 1000:
                return "busy", excess
            if account:
                state.excess = excess
                if ms:
                    state.last = now
                self._changed(key, state, now)
                return "ok", excess
            return "again", excess
        handle = self._alloc(key, now)
        if handle is None:
            return "error", 0
        state = self._states[key] = _ReqState(handle, now if account else None)
        if account:
            self._changed(key, state, now)
        return ("ok" if account else "again"), 0

    def _commit(self, key: str, now: int) -> int:
        """Take the request into a bucket looked up earlier with ``"again"``; its new excess."""
        state = self._states[key]
        excess, ms = self._leak(state, now)
        if ms:
            state.last = now
        state.excess = excess
        self._changed(key, state, now)
        return excess

    def _expire(self, now: int, force: bool) -> None:
        # Only the oldest states are looked at: up to two that are idle and drained, and when
        # memory ran out the very oldest first, whatever its state.
        for i in range(3 if force else 2):
            if not self._states:
                return
            key, state = next(iter(self._states.items()))
            if not (force and i == 0) and state.last is not None:
                ms = abs(now - state.last)
                if ms < LIMIT_REQ_IDLE_MS or state.excess - self.rate * ms // 1000 > 0:
                    return
            del self._states[key]
            self._pending.pop(key, None)
            self.slab.free(state.handle)

    def _count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


def _delay_ms(zone: LimitReqZone, limit: LimitReqConf, excess: int) -> float:
    allowed = _NO_DELAY if limit.nodelay else limit.delay * 1000
    if excess <= allowed:
        return 0
    return (excess - allowed) * 1000 // zone.rate


def limit_req(checks: Sequence[tuple[LimitReqZone, str, LimitReqConf]], now_ms: float) -> tuple[str, float]:
    """Apply a location's ``limit_req`` directives, in order, to one request.

    ``checks`` holds ``(zone, key, limit)`` per directive, ``key`` being the zone's key
    evaluated for this request. Returns ``(outcome, delay_ms)``: ``"passed"``, ``"delayed"``
    (wait ``delay_ms`` before going on), ``"rejected"`` (answer with ``limit.status``),
    ``"delayed_dry_run"`` or ``"rejected_dry_run"`` (go on at once). A request no zone
    accounts (every key empty) is ``("passed", 0.0)`` and counted nowhere.

    Counting: the zone that rejects counts the rejection and the zones before it count
    nothing (their buckets are left as they were); otherwise every zone that accounted the
    request counts its own verdict, ``delayed`` when its own delay is positive.
    """
    if not checks:
        return PASSED, 0.0
    now = int(now_ms)
    dry_run = checks[0][2].dry_run  # limit_req_dry_run is set per location
    consulted: list[tuple[LimitReqZone, str, LimitReqConf]] = []
    pending: list[int] = []  # indexes into consulted of buckets looked up but not yet taken
    last_excess: int | None = None
    last = len(checks) - 1
    for n, (zone, key, limit) in enumerate(checks):
        if not key or len(key) > MAX_LIMIT_REQ_KEY:
            continue
        rc, excess = zone._lookup(key, now, limit, account=(n == last))
        if rc in ("busy", "error"):
            zone._count(REJECTED_DRY_RUN if dry_run else REJECTED)
            if dry_run:
                return REJECTED_DRY_RUN, 0.0
            return REJECTED, 0.0
        consulted.append((zone, key, limit))
        if rc == "again":
            pending.append(len(consulted) - 1)
        else:
            last_excess = excess
    if not consulted:
        return PASSED, 0.0
    delays = []
    for i, (zone, key, limit) in enumerate(consulted):
        if i in pending:
            excess = zone._commit(key, now)
        else:
            excess = last_excess
        delays.append(_delay_ms(zone, limit, excess))
    delay = max(delays)
    for (zone, _key, _limit), own in zip(consulted, delays, strict=True):
        if own > 0:
            zone._count(DELAYED_DRY_RUN if dry_run else DELAYED)
        else:
            zone._count(PASSED)
    if delay <= 0:
        return PASSED, 0.0
    if dry_run:
        return DELAYED_DRY_RUN, 0.0
    return DELAYED, float(delay)


# ---------------------------------------------------------------------------------------------
# limit_conn


class LimitConnZone:
    """One ``limit_conn_zone`` (http or stream): connections per key and the API v6 counters."""

    def __init__(self, conf: LimitConnZoneConf, slab: SlabPool | None = None):
        self.conf = conf
        self.name = conf.name
        self.slab = slab if slab is not None else SlabPool(conf.size)
        self._conns: dict[str, list[int]] = {}  # key -> [connections, slab handle]
        self.passed = 0
        self.rejected = 0
        self.rejected_dry_run = 0
        # The tree, its sentinel and the zone's name for log messages, as nginx allocates them.
        self.slab.alloc(24)
        self.slab.alloc(40)
        self.slab.alloc(len(' in limit_conn_zone ""') + 1 + len(conf.name))

    def acquire(self, key: str, limit: LimitConnConf) -> str:
        """One connection (or request) under this zone alone: its outcome, counted.

        ``"passed"`` holds a count for ``key`` until :meth:`release`; ``"rejected"`` and
        ``"rejected_dry_run"`` hold nothing. An empty key passes without being counted.
        """
        outcome, _held = limit_conn([(self, key, limit)])
        return outcome

    def release(self, key: str) -> None:
        """The connection counted by a passed :meth:`acquire` of ``key`` has ended."""
        if not _accountable_conn_key(key):
            return
        entry = self._conns[key]
        entry[0] -= 1
        if entry[0] == 0:
            # The state goes as soon as its key has no connections left.
            del self._conns[key]
            self.slab.free(entry[1])

    def conns(self, key: str) -> int:
        """Connections currently counted for ``key``."""
        entry = self._conns.get(key)
        return 0 if entry is None else entry[0]

    def __len__(self) -> int:
        return len(self._conns)

    def reset_statistics(self) -> None:
        """DELETE ``/http/limit_conns/{zone}`` (or ``/stream/limit_conns/{zone}``)."""
        self.passed = self.rejected = self.rejected_dry_run = 0

    def _take(self, key: str, number: int) -> bool:
        entry = self._conns.get(key)
        if entry is None:
            handle = self.slab.alloc(LIMIT_CONN_STATE_BYTES + _key_bytes(self.conf.key, key))
            if handle is None:
                return False
            self._conns[key] = [1, handle]
            return True
        if entry[0] >= number:
            return False
        entry[0] += 1
        return True


def _accountable_conn_key(key: str) -> bool:
    return bool(key) and len(key) <= MAX_LIMIT_CONN_KEY


def limit_conn(
    checks: Sequence[tuple[LimitConnZone, str, LimitConnConf]],
) -> tuple[str, list[tuple[LimitConnZone, str]]]:
    """Apply a location's (or stream server's) ``limit_conn`` directives, in order.

    Returns the outcome (``"passed"``, ``"rejected"`` or ``"rejected_dry_run"``) and the
    ``(zone, key)`` pairs now held, to :meth:`LimitConnZone.release` when the connection ends.
    The first zone at its limit (or out of memory) rejects; counts already taken by earlier
    zones are given back, in dry run too, so a dry-run rejection holds nothing. The rejecting
    zone counts the rejection, the earlier ones nothing; on success every zone counts
    ``passed``.
    """
    held: list[tuple[LimitConnZone, str]] = []
    for zone, key, limit in checks:
        if not _accountable_conn_key(key):
            continue
        if not zone._take(key, limit.number):
            for z, k in held:
                z.release(k)
            outcome = REJECTED_DRY_RUN if checks[0][2].dry_run else REJECTED
            setattr(zone, outcome, getattr(zone, outcome) + 1)
            return outcome, []
        held.append((zone, key))
    for zone, _key in held:
        zone.passed += 1
    return PASSED, held
