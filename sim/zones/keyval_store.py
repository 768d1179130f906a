"""What a keyval zone keeps, apart from the API and zone_sync that act on it.

:class:`KeyvalStore` is the part of :class:`sim.zones.keyval.KeyvalZone` that holds the pairs: the
:class:`Record` of each key, the slab memory each pair allocates (and :class:`KeyvalZoneFull`
when the pool has no room), the lookup indexes for ``type=ip`` and ``type=prefix``, the expiry
heap with its one simpy timer, the ``/slabs/{zone}`` figures, and the ``state=`` file that
:meth:`KeyvalStore.restart` reads back. :mod:`sim.zones.keyval` re-exports the public names.

A watcher (the replication probe, :mod:`sim.checks.replication`) can attach a :class:`ZoneWatch`:
it keeps a digest of the zone's *live* pairs (the XOR of a hash of ``(key, value, timestamp,
origin)`` of each), updated on every store, delete and expiry, and reports each change of a
key's live value to a callback. Comparing two nodes is then comparing two integers, whatever
the number of keys. A zone without a watch pays one ``is None`` test per change.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sim.conf.config import KeyvalZoneConf
from sim.zones.keyval_errors import KeyvalStateError, KeyvalZoneFull
from sim.zones.slabs import PAGE_SIZE, SLOT_SIZES, SlabPool, slot_size

# ---------------------------------------------------------------------------------------------
# Memory: what one pair asks of the zone's slab allocator (estimates, see docs/keyval.md)

#: Fixed part of one pair's node: tree links, expiry and timestamp, key and value lengths.
NODE_OVERHEAD = 80
#: Size of the extra lookup-index node that ``type=ip`` and ``type=prefix`` zones keep per pair.
INDEX_NODE = 48
#: Fixed part of one record on the zone_sync wire: lengths, timestamp, expiry.
WIRE_OVERHEAD = 24

_STATE_VERSION = 1


def allocation_cost(nbytes: int) -> int:
    """The memory one allocation of ``nbytes`` really holds: its slot, or whole pages."""
    size = slot_size(nbytes)
    return size if size is not None else -(-nbytes // PAGE_SIZE) * PAGE_SIZE


@dataclass(frozen=True, slots=True)
class SlotStats:
    """One row of ``/slabs/{zone}.slots``: a slot size's use and allocation attempts."""

    used: int
    free: int
    reqs: int
    fails: int


# ---------------------------------------------------------------------------------------------
# Records


class Record:
    """One pair as stored: written at ``timestamp`` (origin node's clock, ms) by ``origin``.

    ``expire_at`` is sim time (ms) or None for a zone without timeout; ``size`` is the slab
    memory the pair holds (its slot-rounded allocations). A record is never changed once made:
    an update stores a new one. (A plain class rather than a frozen dataclass: a node makes one
    for every record it stores or merges, and a frozen dataclass's constructor costs several
    times as much, compiled or not.)
    """

    __slots__ = ("key", "value", "timestamp", "origin", "expire_at", "size", "wire_bytes", "seq", "node",
                 "index")

    def __init__(self, key: str, value: str, timestamp: float, origin: str, expire_at: float | None,
                 size: int, wire_bytes: int = 0, seq: int = 0, node: int = -1, index: int = -1) -> None:
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.origin = origin
        self.expire_at = expire_at
        self.size = size
        #: bytes this record takes in a zone_sync buffer (worked out once, when it is stored)
        self.wire_bytes = wire_bytes
        # The store's own bookkeeping, not part of the pair (equality and hash leave it out):
        #: which store of its zone made it (expiry heaps name a record by key and seq)
        self.seq = seq
        #: slab handles of the pair's node and of its lookup-index node (-1: none)
        self.node = node
        self.index = index

    def _fields(self) -> tuple:
        return (self.key, self.value, self.timestamp, self.origin, self.expire_at, self.size, self.wire_bytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Record(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp!r}, "
                f"origin={self.origin!r}, expire_at={self.expire_at!r}, size={self.size!r}, "
                f"wire_bytes={self.wire_bytes!r})")

    def live_at(self, now: float) -> bool:
        """Whether the pair has not expired at sim time ``now``."""
        return self.expire_at is None or now < self.expire_at

    def expire_in(self, now: float) -> float | None:
        """Milliseconds of life left at sim time ``now`` (None: never expires)."""
        return None if self.expire_at is None else max(0.0, self.expire_at - now)


# ---------------------------------------------------------------------------------------------
# What a watcher sees of the store


def record_hash(key: str, value: str, timestamp: float, origin: str) -> int:
    """The digest term of one pair: equal records on two nodes give equal terms."""
    return hash((key, value, timestamp, origin))


class ZoneWatch:
    """A digest of the live pairs of one zone, and a callback for each change of a live value.

    ``digest`` is the XOR of :func:`record_hash` over the pairs live at the last instant the
    watch was brought up to date (:meth:`KeyvalStore.watch_sync`, and every store or delete,
    which first retire the pairs that expired since). ``on_change(key, old, new)`` gets the
    key's live value before and after (None: absent or expired) whenever they differ.
    Expiry is lazy in the zone (nothing is freed until the next write); the watch keeps its own
    heap of expiry instants so that its view is what a read sees.
    """

    __slots__ = ("digest", "heap", "listeners", "on_change")

    def __init__(self) -> None:
        self.digest = 0
        #: ``(expire_at, seq, key)`` of the pairs it holds that expire
        self.heap: list[tuple[float, int, str]] = []
        self.listeners: list = []
        self.on_change = self._fan_out

    def listen(self, listener) -> None:
        if listener not in self.listeners:
            self.listeners.append(listener)
        # one listener (the usual case) is called directly, several through the fan-out
        self.on_change = self.listeners[0] if len(self.listeners) == 1 else self._fan_out

    def forget(self, listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)
        self.on_change = self.listeners[0] if len(self.listeners) == 1 else self._fan_out

    def _fan_out(self, key: str, old: str | None, new: str | None) -> None:
        for listener in self.listeners:
            listener(key, old, new)

    def add(self, rec: Record, now: float) -> str | None:
        """``rec`` became the key's record: its value if it is live now (it then joins the digest)."""
        exp = rec.expire_at
        if exp is not None:
            if exp <= now:
                return None
            heapq.heappush(self.heap, (exp, rec.seq, rec.key))
        self.digest ^= hash((rec.key, rec.value, rec.timestamp, rec.origin))
        return rec.value

    def drop(self, rec: Record, now: float) -> str | None:
        """``rec`` stopped being the key's record: its value if it was live (it leaves the digest)."""
        exp = rec.expire_at
        if exp is not None and exp <= now:
            return None  # retired already when it expired
        self.digest ^= hash((rec.key, rec.value, rec.timestamp, rec.origin))
        return rec.value

    def expire(self, records: dict[str, Record], now: float) -> None:
        """Retire the pairs whose expiry instant has come (each reported as a change to None)."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            rec = records.get(key)
            if rec is not None and rec.seq == seq:
                self.digest ^= hash((key, rec.value, rec.timestamp, rec.origin))
                self.on_change(key, rec.value, None)
        if len(heap) > 2 * len(records) + 64:
            self.heap = _current(heap, records)


# ---------------------------------------------------------------------------------------------
# The store


class KeyvalStore:
    """The pairs of one keyval zone on one node, their memory, expiry and state file."""

    def __init__(
        self,
        conf: KeyvalZoneConf,
        env,
        clock,
        node_name: str,
        state_dir: Path | None = None,
        *,
        write_through: bool = True,
    ):
        self.conf = conf
        self.env = env
        self.clock = clock
        self.node_name = node_name
        self.state_dir = Path(state_dir) if state_dir is not None else None
        #: True: every change rewrites the state at once (nginx). False: changes only set
        #: ``dirty`` and the node calls :meth:`save` at its crash and stop points.
        self.write_through = write_through
        self.dirty = False
        #: Records too large for a zone_sync buffer, skipped by :meth:`drain_pending`.
        self.skipped_records = 0
        # What the replication checker reads to explain a lost update (sim.checks.replication):
        #: local writes refused because the pair did not fit (the API answers 413)
        self.writes_refused = 0
        #: remote records dropped because they did not fit, and key -> sim time of the last drop
        self.records_dropped = 0
        self.dropped_keys: dict[str, float] = {}
        #: key -> sim time, of records that expired in the output queue before being sent
        self.expired_unsent: dict[str, float] = {}
        #: key -> sim time, of received records whose lifetime had run out on the way
        self.expired_on_arrival: dict[str, float] = {}
        self._watch: ZoneWatch | None = None
        self._saved: list[dict] | None = None  # the "state file" when state_dir is None
        self._clear_memory()

    def _clear_memory(self) -> None:
        w = self._watch
        if w is not None:  # every live pair is gone: tell the watcher, key by key
            now = self.env.now
            w.expire(self._records, now)
            for rec in self._records.values():
                old = w.drop(rec, now)
                if old is not None:
                    w.on_change(rec.key, old, None)
            w.heap = []
        #: The zone's shared memory; ``/slabs/{zone}`` renders ``slab.stats()``.
        self.slab = SlabPool(self.conf.size)
        self._records: dict[str, Record] = {}
        self._pending: dict[str, None] = {}  # insertion-ordered set
        #: ``(expire_at, seq, key)`` of every record stored with an expiry (stale ones too)
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._used_bytes = 0
        self._ip_index: dict[tuple[int, int], dict[int, list[str]]] = {}
        self._ip_plens: dict[int, dict[int, int]] = {4: {}, 6: {}}
        self._prefix_lens: dict[int, int] = {}

    # -- memory --------------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        """Slab memory held by the pairs (slot-rounded)."""
        return self._used_bytes

    @property
    def pages_total(self) -> int:
        return self.slab.pages_total

    @property
    def pages_used(self) -> int:
        return self.slab.pages_used

    @property
    def pages_free(self) -> int:
        return self.slab.pages_free

    # -- watching -------------------------------------------------------------------------------

    def watch(self, listener) -> ZoneWatch:
        """Call ``listener(key, old, new)`` on every change of a live value, from now on.

        The first listener creates the zone's :class:`ZoneWatch`, whose digest starts with the
        pairs live now; later ones share it."""
        w = self._watch
        if w is None:
            w = ZoneWatch()
            now = self.env.now
            for rec in self._records.values():
                w.add(rec, now)
            self._watch = w
        w.listen(listener)
        return w

    def unwatch(self, listener) -> None:
        """Stop calling ``listener``; the watch goes with its last listener."""
        w = self._watch
        if w is not None:
            w.forget(listener)
            if not w.listeners:
                self._watch = None

    @property
    def watched(self) -> ZoneWatch | None:
        return self._watch

    def watch_sync(self) -> int:
        """Bring the watch up to now (pairs that expired leave it); its digest, or 0 unwatched."""
        w = self._watch
        if w is None:
            return 0
        if w.heap and w.heap[0][0] <= self.env.now:
            w.expire(self._records, self.env.now)
        return w.digest

    def live_view(self) -> dict[str, str]:
        """``{key: value}`` of the pairs live now (what the watch's digest covers)."""
        now = self.env.now
        return {k: r.value for k, r in self._records.items() if r.expire_at is None or now < r.expire_at}

    # -- storage --------------------------------------------------------------------------------

    def _store(self, key: str, value: str, timestamp: float, origin: str, expire_at: float | None) -> None:
        """Insert or replace a pair; on :class:`KeyvalZoneFull` the zone is left as it was."""
        now = self.env.now
        w = self._watch
        if w is not None and w.heap and w.heap[0][0] <= now:
            w.expire(self._records, now)
        self._store_at(key, value, timestamp, origin, expire_at, now)

    def _store_at(
        self, key: str, value: str, timestamp: float, origin: str, expire_at: float | None, now: float
    ) -> None:
        """:meth:`_store` at sim time ``now``, the watch already brought up to it."""
        w = self._watch
        old = self._records.get(key)
        data_bytes = len(key.encode()) + len(value.encode())
        node_bytes = NODE_OVERHEAD + data_bytes
        slab = self.slab
        if old is not None:
            # Freed first, so an update may reuse the old pair's memory in a full zone.
            index = old.index
            slab.free(old.node)
            got = slab.alloc(node_bytes)
            if got is None:
                restored = slab.alloc(self._node_bytes(old))  # the memory just freed
                assert restored is not None
                old.node = restored
                raise KeyvalZoneFull(self.conf.name, node_bytes)
            node = got
            self._used_bytes -= old.size
        else:
            got = slab.alloc(node_bytes)
            if got is None:
                raise KeyvalZoneFull(self.conf.name, node_bytes)
            node = got
            index = -1
            if self.conf.type in ("ip", "prefix"):
                got = slab.alloc(INDEX_NODE)
                if got is None:
                    slab.free(node)
                    raise KeyvalZoneFull(self.conf.name, node_bytes + INDEX_NODE)
                index = got
            self._index_add(key)
        size = allocation_cost(node_bytes) + (allocation_cost(INDEX_NODE) if index >= 0 else 0)
        self._seq += 1
        seq = self._seq
        rec = Record(key, value, timestamp, origin, expire_at, size, WIRE_OVERHEAD + data_bytes, seq, node, index)
        self._records[key] = rec
        self._used_bytes += size
        entry: tuple[float, int, str] | None = None
        if expire_at is not None:
            entry = (expire_at, seq, key)  # one tuple for both heaps: one object fewer to collect
            heapq.heappush(self._heap, entry)
            if len(self._heap) > 2 * len(self._records) + 64:
                self._compact_heap()
        if w is not None:
            # ZoneWatch.drop(old) and ZoneWatch.add(rec), inlined: this runs per record applied
            before = None
            if old is not None and (old.expire_at is None or old.expire_at > now):
                w.digest ^= hash((key, old.value, old.timestamp, old.origin))
                before = old.value
            if expire_at is None or expire_at > now:
                if entry is not None:
                    heapq.heappush(w.heap, entry)
                w.digest ^= hash((key, value, timestamp, origin))
                if before != value:
                    w.on_change(key, before, value)
            elif before is not None:
                w.on_change(key, before, None)

    @staticmethod
    def _node_bytes(rec: Record) -> int:
        return NODE_OVERHEAD + len(rec.key.encode()) + len(rec.value.encode())

    def _remove(self, key: str) -> None:
        w = self._watch
        if w is not None:
            now = self.env.now
            if w.heap and w.heap[0][0] <= now:
                w.expire(self._records, now)
            rec = self._records[key]
            before = w.drop(rec, now)
            if before is not None:
                w.on_change(key, before, None)
        rec = self._records.pop(key)
        self.slab.free(rec.node)
        if rec.index >= 0:
            self.slab.free(rec.index)
        self._used_bytes -= rec.size
        self._index_remove(key)
        self._pending.pop(key, None)

    def _index_add(self, key: str) -> None:
        if self.conf.type == "ip":
            net = _ip_network(key)
            assert net is not None  # the key was checked before it was stored
            slot = (net.version, net.prefixlen)
            keys = self._ip_index.setdefault(slot, {}).setdefault(int(net.network_address), [])
            keys.append(key)
            keys.sort()  # equal networks spelled differently: the smallest spelling wins
            plens = self._ip_plens[net.version]
            plens[net.prefixlen] = plens.get(net.prefixlen, 0) + 1
        elif self.conf.type == "prefix":
            self._prefix_lens[len(key)] = self._prefix_lens.get(len(key), 0) + 1

    def _index_remove(self, key: str) -> None:
        if self.conf.type == "ip":
            net = _ip_network(key)
            assert net is not None
            slot = (net.version, net.prefixlen)
            by_addr = self._ip_index[slot]
            keys = by_addr[int(net.network_address)]
            keys.remove(key)
            if not keys:
                del by_addr[int(net.network_address)]
            plens = self._ip_plens[net.version]
            plens[net.prefixlen] -= 1
            if not plens[net.prefixlen]:
                del plens[net.prefixlen]
                del self._ip_index[slot]
        elif self.conf.type == "prefix":
            self._prefix_lens[len(key)] -= 1
            if not self._prefix_lens[len(key)]:
                del self._prefix_lens[len(key)]

    # -- expiry ---------------------------------------------------------------------------------

    def _expire_due(self) -> None:
        heap, now, records = self._heap, self.env.now, self._records
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            rec = records.get(key)
            if rec is not None and rec.seq == seq:
                self._remove(key)

    def _compact_heap(self) -> None:
        self._heap = _current(self._heap, self._records)

    # -- memory statistics ----------------------------------------------------------------------

    def slab_allocations(self) -> list[int]:
        """Sizes (slot-rounded, or whole pages) of every live allocation; sums to ``used_bytes``."""
        sizes = []
        index_cost = allocation_cost(INDEX_NODE)
        for rec in self._records.values():
            sizes.append(allocation_cost(self._node_bytes(rec)))
            if rec.index >= 0:
                sizes.append(index_cost)
        return sorted(sizes)

    def slot_usage(self) -> dict[int, SlotStats]:
        """Per slot size: slots used and free in the pages holding that size, reqs, fails."""
        return {size: SlotStats(**self.slab.slot_stats(size)) for size in SLOT_SIZES}

    def reset_slab_stats(self) -> None:
        """``DELETE /slabs/{zone}``: zero ``reqs`` and ``fails`` (the pairs are untouched)."""
        self.slab.reset_statistics()

    # -- state file -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path | None:
        """Where ``state=`` is written inside ``state_dir`` (None: no state or memory only)."""
        if self.conf.state is None or self.state_dir is None:
            return None
        rel = Path(self.conf.state)
        if rel.is_absolute():
            rel = rel.relative_to(rel.anchor)  # never write outside the run's directory
        return self.state_dir / rel

    def _changed(self) -> None:
        if self.conf.state is None:
            return
        self.dirty = True
        if self.write_through:
            self.save()

    def _state_document(self) -> list[dict]:
        self._expire_due()
        offset = self.clock.now_ms() - self.env.now  # sim ms -> this node's wall clock
        return [
            {
                "key": r.key,
                "value": r.value,
                "timestamp": r.timestamp,
                "origin": r.origin,
                "expire": None if r.expire_at is None else r.expire_at + offset,
            }
            for r in self._records.values()
        ]

    def save(self) -> None:
        """Write the zone's state now (file, or memory when ``state_dir`` is None)."""
        if self.conf.state is None:
            return
        records = self._state_document()
        path = self.state_path
        if path is None:
            self._saved = records
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            doc = {"version": _STATE_VERSION, "zone": self.conf.name, "records": records}
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        self.dirty = False

    def load_state(self) -> int:
        """Add the saved pairs that are still live by this node's clock; returns how many.

        Saved timestamps and origins are kept; nothing is queued for zone_sync (a restarted
        node gets and gives full snapshots when it reconnects). Pairs that no longer fit the
        zone, or whose key the zone's type rejects, are left out.
        """
        if self.conf.state is None:
            return 0
        path = self.state_path
        if path is None:
            records = self._saved or []
        elif not path.exists():
            return 0
        else:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as err:
                raise KeyvalStateError(f"{path}: {err}") from None
            if not isinstance(doc, dict) or doc.get("version") != _STATE_VERSION:
                raise KeyvalStateError(f"{path}: not a clustersim keyval state file")
            records = doc["records"]
        offset = self.clock.now_ms() - self.env.now
        loaded = 0
        for item in records:
            key, value = item["key"], item["value"]
            expire_at = None if item["expire"] is None else item["expire"] - offset
            if expire_at is not None and expire_at <= self.env.now:
                continue
            if key in self._records or (self.conf.type == "ip" and _ip_network(key) is None):
                continue
            try:
                self._store(key, value, item["timestamp"], item["origin"], expire_at)
            except KeyvalZoneFull:
                continue
            loaded += 1
        return loaded

    def restart(self) -> int:
        """The node's nginx stopped and started: shared memory is lost, the state file is read.

        Returns the number of pairs restored. Unsaved changes (``write_through=False`` and no
        :meth:`save` since) are lost, as they would be on a real crash between writes.
        """
        self._clear_memory()
        self.dirty = False
        return self.load_state()


def _current(heap: list[tuple[float, int, str]], records: dict[str, Record]) -> list[tuple[float, int, str]]:
    """An expiry heap without the entries of records that were replaced or removed since."""
    out = []
    for entry in heap:
        rec = records.get(entry[2])
        if rec is not None and rec.seq == entry[1]:
            out.append(entry)
    heapq.heapify(out)
    return out


def _ip_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None

