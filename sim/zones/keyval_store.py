"""What a keyval zone keeps, apart from the API and zone_sync that act on it.

:class:`KeyvalStore` is the part of :class:`sim.zones.keyval.KeyvalZone` that holds the pairs: the
entry of each key (a tuple, :mod:`sim.zones.keyval_entry`), the slab memory each pair allocates (and :class:`KeyvalZoneFull`
when the pool has no room), the lookup indexes for ``type=ip`` and ``type=prefix``, the expiry
heap with its one simpy timer, the ``/slabs/{zone}`` figures, and the ``state=`` file that
:meth:`KeyvalStore.restart` reads back. :mod:`sim.zones.keyval` re-exports the public names.

A watcher (the replication probe, :mod:`sim.checks.replication`) can attach a :class:`ZoneWatch`:
it keeps a digest of the zone's *live* pairs (the XOR of a hash of ``(key, value, timestamp,
origin)`` of each, made once by the writer and carried by the entry), updated on every store, delete and expiry, and reports each change of a
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
from sim.zones.keyval_entry import EXPIRE_AT, INDEX, KEY, NEVER, NODE, Entry, Pair, record_hash
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
# What a watcher sees of the store


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
        #: the entries of the pairs it holds that expire (the zone's heap shares them)
        self.heap: list[Entry] = []
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

    def add(self, pair: Pair, entry: Entry, now: float) -> str | None:
        """``pair`` became the key's (held as ``entry``): its value if it is live now (it then
        joins the digest)."""
        exp = entry[EXPIRE_AT]
        if exp <= now:
            return None
        if exp != NEVER:
            heapq.heappush(self.heap, entry)
        self.digest ^= pair.digest
        return pair.value

    def drop(self, pair: Pair, entry: Entry, now: float) -> str | None:
        """``pair`` stopped being the key's: its value if it was live (it leaves the digest)."""
        if entry[EXPIRE_AT] <= now:
            return None  # retired already when it expired
        self.digest ^= pair.digest
        return pair.value

    def expire(self, entries: dict[str, Entry], records: dict[str, Pair], now: float) -> None:
        """Retire the pairs whose expiry instant has come (each reported as a change to None)."""
        heap = self.heap
        while heap and heap[0][EXPIRE_AT] <= now:
            gone = heapq.heappop(heap)
            key = gone[KEY]
            if entries.get(key) is gone:
                pair = records[key]
                self.digest ^= pair.digest
                self.on_change(key, pair.value, None)
        if len(heap) > 2 * len(entries) + 64:
            self.heap = _current(heap, entries)


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
            w.expire(self._entries, self._records, now)
            for key, pair in self._records.items():
                old = w.drop(pair, self._entries[key], now)
                if old is not None:
                    w.on_change(key, old, None)
            w.heap = []
        #: The zone's shared memory; ``/slabs/{zone}`` renders ``slab.stats()``.
        self.slab = SlabPool(self.conf.size)
        #: key -> the pair it holds, and key -> where that pair is on this node (the two always
        #: hold the same keys, in the same order)
        self._records: dict[str, Pair] = {}
        self._entries: dict[str, Entry] = {}
        self._pending: dict[str, None] = {}  # insertion-ordered set
        #: every entry stored with an expiry (stale ones too, until popped or compacted)
        self._heap: list[Entry] = []
        self._index_cost = allocation_cost(INDEX_NODE) if self.conf.type in ("ip", "prefix") else 0
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
            for key, pair in self._records.items():
                w.add(pair, self._entries[key], now)
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
        if w.heap and w.heap[0][EXPIRE_AT] <= self.env.now:
            w.expire(self._entries, self._records, self.env.now)
        return w.digest

    def live_view(self) -> dict[str, str]:
        """``{key: value}`` of the pairs live now (what the watch's digest covers)."""
        now = self.env.now
        # the two tables hold the same keys in the same order (see _records)
        return {p.key: p.value for p, e in zip(self._records.values(), self._entries.values(), strict=True)
                if now < e[EXPIRE_AT]}

    # -- storage --------------------------------------------------------------------------------

    def _store(self, key: str, value: str, timestamp: float, origin: str, expire_at: float | None) -> None:
        """Insert or replace a pair; on :class:`KeyvalZoneFull` the zone is left as it was."""
        now = self.env.now
        w = self._watch
        if w is not None and w.heap and w.heap[0][EXPIRE_AT] <= now:
            w.expire(self._entries, self._records, now)
        pair = Pair(key, value, timestamp, origin, WIRE_OVERHEAD + len(key.encode()) + len(value.encode()),
                    record_hash(key, value, timestamp, origin))
        self._store_at(pair, NEVER if expire_at is None else expire_at, now, self._records.get(key))

    def _store_at(self, pair: Pair, expire_at: float, now: float, old_pair: Pair | None) -> None:
        """:meth:`_store` of a made pair at sim time ``now``, the watch already brought up to it;
        ``old_pair`` is the key's pair now (None: absent), which the caller has looked up already
        (a lookup in a table of 100k keys is a cache miss: a merge makes as few as it can)."""
        w = self._watch
        key = pair.key
        entries = self._entries
        old = entries[key] if old_pair is not None else None
        node_bytes = NODE_OVERHEAD + pair.wire_bytes - WIRE_OVERHEAD
        slab = self.slab
        if old is not None and old_pair is not None:
            # Freed first, so an update may reuse the old pair's memory in a full zone.
            index = old[INDEX]
            slab.free(old[NODE])
            got = slab.alloc(node_bytes)
            if got is None:
                self._restore(old, old_pair, now)
                raise KeyvalZoneFull(self.conf.name, node_bytes)
            node = got
            self._used_bytes -= self._size(old_pair, index)
        else:
            got = slab.alloc(node_bytes)
            if got is None:
                raise KeyvalZoneFull(self.conf.name, node_bytes)
            node = got
            index = -1
            if self._index_cost:
                got = slab.alloc(INDEX_NODE)
                if got is None:
                    slab.free(node)
                    raise KeyvalZoneFull(self.conf.name, node_bytes + INDEX_NODE)
                index = got
            self._index_add(key)
        entry: Entry = (expire_at, key, node, index)  # one boxed tuple, shared by the table and heaps
        entries[key] = entry
        self._records[key] = pair
        self._used_bytes += self._size(pair, index)
        if expire_at != NEVER:
            heapq.heappush(self._heap, entry)
            if len(self._heap) > 2 * len(entries) + 64:
                self._compact_heap()
        if w is not None:
            # ZoneWatch.drop(old) and ZoneWatch.add(pair), inlined: this runs per record applied
            before = None
            value = pair.value
            if old is not None and old_pair is not None and old[EXPIRE_AT] > now:
                w.digest ^= old_pair.digest
                before = old_pair.value
            if expire_at > now:
                if expire_at != NEVER:
                    heapq.heappush(w.heap, entry)
                w.digest ^= pair.digest
                if before != value:
                    w.on_change(key, before, value)
            elif before is not None:
                w.on_change(key, before, None)

    def _restore(self, old: Entry, pair: Pair, now: float) -> None:
        """Give ``pair`` back the memory just freed for its update (which did not fit)."""
        node = self.slab.alloc(_node_bytes(pair))
        assert node is not None
        back: Entry = (old[EXPIRE_AT], old[KEY], node, old[INDEX])
        self._entries[old[KEY]] = back
        if back[EXPIRE_AT] != NEVER:  # a new entry: the heaps must name it, not the old one
            heapq.heappush(self._heap, back)
            w = self._watch
            if w is not None and back[EXPIRE_AT] > now:
                heapq.heappush(w.heap, back)

    def _size(self, pair: Pair, index: int) -> int:
        """Slab memory ``pair`` holds here (its node, and its index node when it has one)."""
        return allocation_cost(_node_bytes(pair)) + (self._index_cost if index >= 0 else 0)

    def _remove(self, key: str) -> None:
        w = self._watch
        if w is not None:
            now = self.env.now
            if w.heap and w.heap[0][EXPIRE_AT] <= now:
                w.expire(self._entries, self._records, now)
            before = w.drop(self._records[key], self._entries[key], now)
            if before is not None:
                w.on_change(key, before, None)
        pair = self._records.pop(key)
        entry = self._entries.pop(key)
        self.slab.free(entry[NODE])
        if entry[INDEX] >= 0:
            self.slab.free(entry[INDEX])
        self._used_bytes -= self._size(pair, entry[INDEX])
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
        heap, now, entries = self._heap, self.env.now, self._entries
        while heap and heap[0][EXPIRE_AT] <= now:
            gone = heapq.heappop(heap)
            if entries.get(gone[KEY]) is gone:
                self._remove(gone[KEY])

    def _compact_heap(self) -> None:
        self._heap = _current(self._heap, self._entries)

    # -- memory statistics ----------------------------------------------------------------------

    def slab_allocations(self) -> list[int]:
        """Sizes (slot-rounded, or whole pages) of every live allocation; sums to ``used_bytes``."""
        sizes = []
        index_cost = allocation_cost(INDEX_NODE)
        for key, pair in self._records.items():
            sizes.append(allocation_cost(_node_bytes(pair)))
            if self._entries[key][INDEX] >= 0:
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
        entries = self._entries
        return [
            {
                "key": p.key,
                "value": p.value,
                "timestamp": p.timestamp,
                "origin": p.origin,
                "expire": None if entries[k][EXPIRE_AT] == NEVER else entries[k][EXPIRE_AT] + offset,
            }
            for k, p in self._records.items()
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


def _current(heap: list[Entry], entries: dict[str, Entry]) -> list[Entry]:
    """An expiry heap without the entries of records that were replaced or removed since."""
    out = [entry for entry in heap if entries.get(entry[KEY]) is entry]
    heapq.heapify(out)
    return out


def _node_bytes(pair: Pair) -> int:
    """What the pair's node asks of the slab allocator (its wire size holds the data bytes)."""
    return NODE_OVERHEAD + pair.wire_bytes - WIRE_OVERHEAD


def _ip_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None

