"""The NGINX Plus key-value store: one ``keyval_zone`` on one node.

A :class:`KeyvalZone` owns the pairs of ``keyval_zone zone=name:size [state=file] [timeout=time]
[type=string|ip|prefix] [sync]``. It applies the API's rules for adding, changing and deleting
pairs (the exceptions below carry nginx's wording and no HTTP status), answers the lookups the
``keyval`` variable makes for each ``type``, and keeps the things around the pairs:

* **expiry** (``timeout`` or a per-pair ``expire``): a pair is live while ``env.now <
  expire_at``. Due pairs are dropped lazily whenever the zone is touched and eagerly by one
  simpy timeout armed for the earliest expiry (a heap of expiry times, no polling);
* **memory**: each pair allocates an estimated node (and, for ``ip``/``prefix``, an index node)
  from the zone's :class:`sim.zones.slabs.SlabPool`; when the pool has no room the pair is refused with
  :class:`KeyvalZoneFull`. The same pool is what ``/slabs/{zone}`` shows;
* **zone_sync hooks** for ``sync`` zones: local writes queue the key (coalesced) for the
  replicator, remote records are merged last-write-wins, and a snapshot lists everything;
* **state file** (``state=``): the pairs, their timestamps and expiry instants as JSON,
  rewritten atomically after each change and read back by :meth:`KeyvalZone.restart`.

docs/keyval.md explains each choice where the nginx documentation is silent.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from sim.conf.config import KeyvalZoneConf
from sim.core.errors import SimError
from sim.zones.slabs import PAGE_SIZE, SLOT_SIZES, SlabPool, slot_size

# ---------------------------------------------------------------------------------------------
# Errors


class KeyvalFormatError(SimError):
    """A request body the keyval API rejects: ``text`` is nginx's wording."""

    code = "KeyvalFormatError"


class KeyvalKeyExists(SimError):
    """POST of a key that is already in the zone."""

    code = "KeyvalKeyExists"

    def __init__(self, key: str):
        self.key = key
        super().__init__(f'key "{key}" already exists')


class KeyvalKeyNotFound(SimError):
    """PATCH or GET ``?key=`` of a key that is not in the zone."""

    code = "KeyvalKeyNotFound"

    def __init__(self, key: str):
        self.key = key
        super().__init__("keyval key not found")


class KeyvalZoneFull(SimError):
    """The zone's shared memory cannot hold the new pair (docs/keyval.md: the API answers 413)."""

    code = "KeyvalZoneFull"

    def __init__(self, zone: str, needed: int):
        self.zone = zone
        self.needed = needed
        super().__init__(f'not enough memory in keyval zone "{zone}"')


class KeyvalStateError(ValueError):
    """A state file that clustersim did not write (or wrote with another format version)."""


# ---------------------------------------------------------------------------------------------
# Memory: what one pair asks of the zone's slab allocator (estimates, see docs/keyval.md)

#: Fixed part of one pair's node: tree links, expiry and timestamp, key and value lengths.
NODE_OVERHEAD = 80
#: Size of the extra lookup-index node that ``type=ip`` and ``type=prefix`` zones keep per pair.
INDEX_NODE = 48
#: Fixed part of one record on the zone_sync wire: lengths, timestamp, expiry.
WIRE_OVERHEAD = 24

_LIVE_FOREVER = math.inf
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
# Records and request values


@dataclass(frozen=True, slots=True)
class Record:
    """One pair as stored: written at ``timestamp`` (origin node's clock, ms) by ``origin``.

    ``expire_at`` is sim time (ms) or None for a zone without timeout; ``size`` is the slab
    memory the pair holds (its slot-rounded allocations).
    """

    key: str
    value: str
    timestamp: float
    origin: str
    expire_at: float | None
    size: int

    @property
    def wire_bytes(self) -> int:
        """Bytes this record takes in a zone_sync buffer."""
        return WIRE_OVERHEAD + len(self.key.encode()) + len(self.value.encode())

    def expire_in(self, now: float) -> float | None:
        """Milliseconds of life left at sim time ``now`` (None: never expires)."""
        return None if self.expire_at is None else max(0.0, self.expire_at - now)


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _scalar(raw, objects_allowed: bool) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        raise KeyvalFormatError("invalid JSON")
    if isinstance(raw, int | float):
        return _number_text(raw)
    if isinstance(raw, dict | list) and not objects_allowed:
        raise KeyvalFormatError("nested object or list")
    raise KeyvalFormatError("invalid JSON")


def _expire(raw) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise KeyvalFormatError("invalid JSON")
    if raw < 0 or (isinstance(raw, float) and not raw.is_integer()):
        raise KeyvalFormatError("invalid JSON")
    return int(raw)


def coerce_value(raw, *, objects_allowed: bool = True) -> str | dict | None:
    """Normalise one JSON value of a POST/PATCH body the way nginx reads it.

    Strings pass, numbers become their text (``1`` -> ``"1"``), ``null`` stays None (PATCH
    deletes with it). With ``objects_allowed`` (API 5+) an object ``{"value": v, "expire": ms}``
    becomes a dict with a str ``"value"`` (may be absent) and an int ``"expire"`` (may be
    absent); without it (API 1-4) objects and lists are "nested object or list".
    """
    if raw is None:
        return None
    if isinstance(raw, dict):
        if not objects_allowed:
            raise KeyvalFormatError("nested object or list")
        if not raw or set(raw) - {"value", "expire"}:
            raise KeyvalFormatError("invalid JSON")
        out: dict = {}
        if "value" in raw:
            out["value"] = _scalar(raw["value"], objects_allowed=True)  # nested: "invalid JSON"
        if "expire" in raw:
            out["expire"] = _expire(raw["expire"])
        return out
    return _scalar(raw, objects_allowed)


# ---------------------------------------------------------------------------------------------
# The zone


class KeyvalZone:
    """The pairs of one keyval zone on one node (see the module docstring)."""

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
        self._saved: list[dict] | None = None  # the "state file" when state_dir is None
        self._clear_memory()

    def _clear_memory(self) -> None:
        #: The zone's shared memory; ``/slabs/{zone}`` renders ``slab.stats()``.
        self.slab = SlabPool(self.conf.size)
        self._records: dict[str, Record] = {}
        self._handles: dict[str, tuple[int, int | None]] = {}  # key -> (node, index node)
        self._pending: dict[str, None] = {}  # insertion-ordered set
        self._heap: list[tuple[float, int, str, Record]] = []
        self._seq = 0
        self._timer = None
        self._timer_at = _LIVE_FOREVER
        self._used_bytes = 0
        self._ip_index: dict[tuple[int, int], dict[int, list[str]]] = {}
        self._ip_plens: dict[int, dict[int, int]] = {4: {}, 6: {}}
        self._prefix_lens: dict[int, int] = {}

    # -- reading --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.conf.name

    @property
    def records_total(self) -> int:
        """Live pairs stored on this node (local and received): zone_sync's ``records_total``."""
        self._expire_due()
        return len(self._records)

    @property
    def records_pending(self) -> int:
        """Keys waiting in the zone_sync output queue."""
        self._expire_due()
        return len(self._pending)

    @property
    def pending_keys(self) -> list[str]:
        self._expire_due()
        return list(self._pending)

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

    def get(self, key: str | None = None) -> dict[str, str]:
        """All live pairs in insertion order, or ``{key: value}`` for one key (exact match)."""
        self._expire_due()
        if key is None:
            return {k: r.value for k, r in self._records.items()}
        rec = self._records.get(key)
        if rec is None:
            raise KeyvalKeyNotFound(key)
        return {key: rec.value}

    def record(self, key: str) -> Record | None:
        self._expire_due()
        return self._records.get(key)

    def lookup(self, search_key: str) -> str | None:
        """The value the ``keyval`` variable takes for ``search_key`` under the zone's ``type``.

        ``string``: the exact key. ``ip``: the most specific record network containing the
        address (a plain address is a /32 or /128). ``prefix``: the longest record key that
        starts ``search_key``.
        """
        self._expire_due()
        kind = self.conf.type
        if kind == "ip":
            key = self._lookup_ip(search_key)
        elif kind == "prefix":
            key = self._lookup_prefix(search_key)
        else:
            key = search_key
        rec = self._records.get(key) if key is not None else None
        return rec.value if rec is not None else None

    def _lookup_ip(self, search_key: str) -> str | None:
        try:
            addr = ipaddress.ip_address(search_key)
        except ValueError:
            # Not an address: only the record spelled the same way can match.
            return search_key if search_key in self._records else None
        version, width, value = addr.version, addr.max_prefixlen, int(addr)
        for plen in sorted(self._ip_plens[version], reverse=True):
            mask = ((1 << plen) - 1) << (width - plen) if plen else 0
            keys = self._ip_index[(version, plen)].get(value & mask)
            if keys:
                return keys[0]
        return None

    def _lookup_prefix(self, search_key: str) -> str | None:
        n = len(search_key)
        for length in sorted(self._prefix_lens, reverse=True):
            if length <= n and search_key[:length] in self._records:
                return search_key[:length]
        return None

    # -- API writes -----------------------------------------------------------------------------

    def post(self, pairs, *, objects_allowed: bool = True) -> None:
        """Add pairs (POST): one, or several into an empty zone; all or nothing."""
        self._expire_due()
        if not isinstance(pairs, dict) or not pairs:
            raise KeyvalFormatError("key required")
        if len(pairs) > 1 and self._records:
            raise KeyvalFormatError("only one key can be added")
        prepared = []
        for key, raw in pairs.items():
            self._check_key(key)
            value = coerce_value(raw, objects_allowed=objects_allowed)
            if value is None:
                raise KeyvalFormatError("invalid JSON")
            if isinstance(value, dict) and "value" not in value:
                raise KeyvalFormatError("invalid JSON")
            prepared.append((key, *self._split(value)))
        for key, _, _ in prepared:
            if key in self._records:
                raise KeyvalKeyExists(key)
        done = []
        try:
            for key, value, expire_at in prepared:
                self._write_local(key, value, expire_at)
                done.append(key)
        except KeyvalZoneFull:
            for key in done:
                self._remove(key)
            raise
        self._changed()

    def patch(self, pairs, *, objects_allowed: bool = True) -> None:
        """Change, re-expire or (value None) delete exactly one key (PATCH)."""
        self._expire_due()
        if not isinstance(pairs, dict) or not pairs:
            raise KeyvalFormatError("key required")
        if len(pairs) > 1:
            raise KeyvalFormatError("only one key can be updated")
        ((key, raw),) = pairs.items()
        value = coerce_value(raw, objects_allowed=objects_allowed)
        split = self._split(value) if value is not None else None
        old = self._records.get(key)
        if old is None:
            raise KeyvalKeyNotFound(key)
        if split is None:
            self._remove(key)
            self._changed()
            return
        new_value, expire_at = split
        if new_value is None:
            new_value = old.value
        self._write_local(key, new_value, expire_at)
        self._changed()

    def delete_all(self) -> None:
        """Empty the zone (DELETE). With ``sync`` this node only: nothing goes on the wire."""
        if not self._records:
            return
        for key in list(self._records):
            self._remove(key)
        self._heap.clear()
        self._changed()

    def assign(self, key: str, value: str) -> None:
        """Set a pair from the data plane (``set $var`` on a keyval variable): an upsert."""
        self._expire_due()
        self._check_key(key)
        self._write_local(key, value, self._default_expiry())
        self._changed()

    def _check_key(self, key) -> None:
        if not isinstance(key, str) or not key:
            raise KeyvalFormatError("invalid key format")
        if self.conf.type == "ip" and _ip_network(key) is None:
            raise KeyvalFormatError("invalid key format")

    def _split(self, value: str | dict) -> tuple[str | None, float | None]:
        """(new value or None to keep, expiry instant) of one coerced request value."""
        if isinstance(value, str):
            return value, self._default_expiry()
        if "expire" in value:
            if self.conf.timeout_ms is None:
                raise KeyvalFormatError("keyval timeout is not enabled")
            return value.get("value"), self.env.now + value["expire"]
        return value.get("value"), self._default_expiry()

    def _default_expiry(self) -> float | None:
        timeout = self.conf.timeout_ms
        return None if timeout is None else self.env.now + timeout

    def _write_local(self, key: str, value: str, expire_at: float | None) -> None:
        self._store(key, value, self.clock.now_ms(), self.node_name, expire_at)
        if self.conf.sync:
            self._pending[key] = None  # an already queued key keeps its place: coalesced

    # -- zone_sync hooks ------------------------------------------------------------------------

    def drain_pending(self, max_bytes: int, max_record_bytes: int | None = None) -> list[Record]:
        """Pop queued records in order while their ``wire_bytes`` fit ``max_bytes``.

        A record bigger than ``max_record_bytes`` (default: the whole budget) could never be
        sent; it leaves the queue and counts in ``skipped_records``. The first record that fits
        in general but not in what is left of the budget stays at the head for the next call.
        """
        self._expire_due()
        limit = max_bytes if max_record_bytes is None else max_record_bytes
        out: list[Record] = []
        left = max_bytes
        for key in list(self._pending):
            rec = self._records[key]
            size = rec.wire_bytes
            if size > limit:
                del self._pending[key]
                self.skipped_records += 1
                continue
            if size > left:
                break
            del self._pending[key]
            out.append(rec)
            left -= size
        return out

    def apply_remote(
        self, key: str, value: str, timestamp: float, origin: str, expire_in_ms: float | None
    ) -> str:
        """Merge a record received from ``origin``; never queues it for sending.

        Last write wins by ``timestamp`` (the writer's clock); on equal timestamps the greater
        origin name wins. Returns ``"inserted"``, ``"updated"``, ``"ignored"`` (local record
        newer, already expired, or a key this zone's type cannot hold) or ``"no_memory"``.
        """
        self._expire_due()
        if expire_in_ms is not None and expire_in_ms <= 0:
            return "ignored"
        if self.conf.type == "ip" and _ip_network(key) is None:
            return "ignored"
        old = self._records.get(key)
        if old is not None and (timestamp, origin) <= (old.timestamp, old.origin):
            return "ignored"
        if expire_in_ms is None:
            expire_at = self._default_expiry()
        else:
            expire_at = self.env.now + expire_in_ms
        try:
            self._store(key, value, timestamp, origin, expire_at)
        except KeyvalZoneFull:
            return "no_memory"
        # The key now holds someone else's write; only local writes are ever sent.
        self._pending.pop(key, None)
        self._changed()
        return "updated" if old is not None else "inserted"

    def snapshot(self) -> list[Record]:
        """Every live record, local and received, for a peer that just (re)connected."""
        self._expire_due()
        return list(self._records.values())

    # -- storage --------------------------------------------------------------------------------

    def _store(self, key: str, value: str, timestamp: float, origin: str, expire_at) -> None:
        """Insert or replace a pair; on :class:`KeyvalZoneFull` the zone is left as it was."""
        old = self._records.get(key)
        node_bytes = NODE_OVERHEAD + len(key.encode()) + len(value.encode())
        if old is not None:
            # Freed first, so an update may reuse the old pair's memory in a full zone.
            old_node, index = self._handles[key]
            self.slab.free(old_node)
            node = self.slab.alloc(node_bytes)
            if node is None:
                self._handles[key] = (self.slab.alloc(self._node_bytes(old)), index)
                raise KeyvalZoneFull(self.conf.name, node_bytes)
            self._used_bytes -= old.size
        else:
            node = self.slab.alloc(node_bytes)
            if node is None:
                raise KeyvalZoneFull(self.conf.name, node_bytes)
            index = None
            if self.conf.type in ("ip", "prefix"):
                index = self.slab.alloc(INDEX_NODE)
                if index is None:
                    self.slab.free(node)
                    raise KeyvalZoneFull(self.conf.name, node_bytes + INDEX_NODE)
            self._index_add(key)
        self._handles[key] = (node, index)
        size = allocation_cost(node_bytes) + (allocation_cost(INDEX_NODE) if index is not None else 0)
        rec = Record(key, value, timestamp, origin, expire_at, size)
        self._records[key] = rec
        self._used_bytes += size
        if expire_at is not None:
            self._seq += 1
            heapq.heappush(self._heap, (expire_at, self._seq, key, rec))
            if len(self._heap) > 2 * len(self._records) + 64:
                self._compact_heap()
            self._arm_timer(expire_at)

    @staticmethod
    def _node_bytes(rec: Record) -> int:
        return NODE_OVERHEAD + len(rec.key.encode()) + len(rec.value.encode())

    def _remove(self, key: str) -> None:
        rec = self._records.pop(key)
        node, index = self._handles.pop(key)
        self.slab.free(node)
        if index is not None:
            self.slab.free(index)
        self._used_bytes -= rec.size
        self._index_remove(key)
        self._pending.pop(key, None)

    def _index_add(self, key: str) -> None:
        if self.conf.type == "ip":
            net = _ip_network(key)
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
        heap, now = self._heap, self.env.now
        while heap and heap[0][0] <= now:
            _, _, key, rec = heapq.heappop(heap)
            if self._records.get(key) is rec:
                self._remove(key)

    def _compact_heap(self) -> None:
        self._heap = [e for e in self._heap if self._records.get(e[2]) is e[3]]
        heapq.heapify(self._heap)

    def _arm_timer(self, at: float) -> None:
        # One pending simpy timeout for the earliest expiry; later ones wait in the heap.
        if at >= self._timer_at:
            return
        self._timer_at = at
        self._timer = self.env.timeout(max(0.0, at - self.env.now))
        self._timer.callbacks.append(self._on_timer)

    def _on_timer(self, event) -> None:
        if event is not self._timer:
            return  # superseded by an earlier timer, or the zone was restarted
        self._timer = None
        self._timer_at = _LIVE_FOREVER
        self._expire_due()
        if self._heap:
            # Stale heap heads (overwritten or deleted pairs) must not keep the timer busy.
            while self._heap and self._records.get(self._heap[0][2]) is not self._heap[0][3]:
                heapq.heappop(self._heap)
            if self._heap:
                self._arm_timer(self._heap[0][0])

    # -- memory statistics ----------------------------------------------------------------------

    def slab_allocations(self) -> list[int]:
        """Sizes (slot-rounded, or whole pages) of every live allocation; sums to ``used_bytes``."""
        sizes = []
        index_cost = allocation_cost(INDEX_NODE)
        for key, rec in self._records.items():
            sizes.append(allocation_cost(self._node_bytes(rec)))
            if self._handles[key][1] is not None:
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


def _ip_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None


__all__ = [
    "INDEX_NODE",
    "NODE_OVERHEAD",
    "WIRE_OVERHEAD",
    "KeyvalFormatError",
    "KeyvalKeyExists",
    "KeyvalKeyNotFound",
    "KeyvalStateError",
    "KeyvalZone",
    "KeyvalZoneFull",
    "Record",
    "SlotStats",
    "allocation_cost",
    "coerce_value",
]
