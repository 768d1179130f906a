"""The NGINX Plus key-value store: one ``keyval_zone`` on one node.

A :class:`KeyvalZone` owns the pairs of ``keyval_zone zone=name:size [state=file] [timeout=time]
[type=string|ip|prefix] [sync]``. It applies the API's rules for adding, changing and deleting
pairs (the exceptions below carry nginx's wording and no HTTP status), answers the lookups the
``keyval`` variable makes for each ``type``, and keeps the things around the pairs:

* **expiry** (``timeout`` or a per-pair ``expire``): a pair is live while ``env.now <
  expire_at``. As nginx's shared-memory zones do, expiry is lazy: a due pair is freed when the
  zone is next written (a heap of expiry times, no timer, no polling). Reads never see it and
  free nothing, while zone_sync's ``records_total`` and ``/slabs`` (which read the zone's
  memory, not its pairs) count it until then. nginx-plus-go-client's suite relies on this: it
  reads ``records_total`` of a ``timeout=5s`` zone after sleeping five seconds;
* **memory**: each pair allocates an estimated node (and, for ``ip``/``prefix``, an index node)
  from the zone's :class:`sim.zones.slabs.SlabPool`; when the pool has no room the pair is refused with
  :class:`KeyvalZoneFull`. The same pool is what ``/slabs/{zone}`` shows;
* **zone_sync hooks** for ``sync`` zones: local writes queue the key (coalesced) for the
  replicator, remote records are merged last-write-wins, and a snapshot lists everything;
* **state file** (``state=``): the pairs, their timestamps and expiry instants as JSON,
  rewritten atomically after each change and read back by :meth:`KeyvalZone.restart`.

The storage side (records, slab memory, expiry, state file) is the base class
:class:`sim.zones.keyval_store.KeyvalStore`; this module adds the reads, the API writes and the
zone_sync hooks, and re-exports the store's public names.

docs/keyval.md explains each choice where the nginx documentation is silent.
"""

from __future__ import annotations

import ipaddress

from sim.zones.keyval_entry import EXPIRE_AT, INDEX, NEVER, Pair, Record
from sim.zones.keyval_errors import KeyvalFormatError, KeyvalKeyExists, KeyvalKeyNotFound
from sim.zones.keyval_store import (
    INDEX_NODE,
    NODE_OVERHEAD,
    WIRE_OVERHEAD,
    KeyvalStateError,
    KeyvalStore,
    KeyvalZoneFull,
    SlotStats,
    _ip_network,
    allocation_cost,
)

# ---------------------------------------------------------------------------------------------
# Request values


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


class KeyvalZone(KeyvalStore):
    """The pairs of one keyval zone on one node (see the module docstring).

    Built as ``KeyvalZone(conf, env, clock, node_name, state_dir=None, *, write_through=True)``
    (the constructor, storage, expiry, memory and state file are in
    :class:`sim.zones.keyval_store.KeyvalStore`); this class adds the reads, the API writes and
    the zone_sync hooks.
    """

    # -- reading --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.conf.name

    @property
    def records_total(self) -> int:
        """Pairs held in the zone's shared memory on this node (local and received): zone_sync's
        ``records_total``. Expired pairs count until the zone next frees them (see the module's
        note on expiry); reading this does not."""
        return len(self._records)

    @property
    def records_pending(self) -> int:
        """Live keys waiting in the zone_sync output queue."""
        return sum(1 for k in self._pending if self._alive(k))

    @property
    def pending_keys(self) -> list[str]:
        return [k for k in self._pending if self._alive(k)]

    def _alive(self, key: str) -> bool:
        """Whether ``key`` holds a pair that has not expired. Reads use this and free nothing:
        only writes sweep due pairs out of memory (the module's note on expiry)."""
        entry = self._entries.get(key)
        return entry is not None and self.env.now < entry[EXPIRE_AT]

    def get(self, key: str | None = None) -> dict[str, str]:
        """All live pairs in insertion order, or ``{key: value}`` for one key (exact match)."""
        if key is None:
            return self.live_view()
        if not self._alive(key):
            raise KeyvalKeyNotFound(key)
        return {key: self._records[key].value}

    def record(self, key: str) -> Record | None:
        """The live pair of ``key`` (a :class:`Record` view), or None."""
        if not self._alive(key):
            return None
        pair, entry = self._records[key], self._entries[key]
        exp = entry[EXPIRE_AT]
        return Record(key, pair.value, pair.timestamp, pair.origin, None if exp == NEVER else exp,
                      self._size(pair, entry[INDEX]), pair.wire_bytes)

    def has(self, key: str) -> bool:
        """Whether ``key`` holds a live pair."""
        return self._alive(key)

    def lookup(self, search_key: str) -> str | None:
        """The value the ``keyval`` variable takes for ``search_key`` under the zone's ``type``.

        ``string``: the exact key. ``ip``: the most specific record network containing the
        address (a plain address is a /32 or /128). ``prefix``: the longest record key that
        starts ``search_key``.
        """
        kind = self.conf.type
        if kind == "ip":
            key = self._lookup_ip(search_key)
        elif kind == "prefix":
            key = self._lookup_prefix(search_key)
        else:
            key = search_key
        return self._records[key].value if key is not None and self._alive(key) else None

    def _lookup_ip(self, search_key: str) -> str | None:
        try:
            addr = ipaddress.ip_address(search_key)
        except ValueError:
            # Not an address: only the record spelled the same way can match.
            return search_key if self._alive(search_key) else None
        version, width, value = addr.version, addr.max_prefixlen, int(addr)
        for plen in sorted(self._ip_plens[version], reverse=True):
            mask = ((1 << plen) - 1) << (width - plen) if plen else 0
            for key in self._ip_index[(version, plen)].get(value & mask) or ():
                if self._alive(key):
                    return key
        return None

    def _lookup_prefix(self, search_key: str) -> str | None:
        n = len(search_key)
        for length in sorted(self._prefix_lens, reverse=True):
            if length <= n and self._alive(search_key[:length]):
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
            new_value, expire_at = self._split(value)
            if new_value is None:  # a POSTed object always has a value (checked above)
                raise KeyvalFormatError("invalid JSON")
            prepared.append((key, new_value, expire_at))
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
        try:
            self._store(key, value, self.clock.now_ms(), self.node_name, expire_at)
        except KeyvalZoneFull:
            self.writes_refused += 1
            raise
        if self.conf.sync:
            self._pending[key] = None  # an already queued key keeps its place: coalesced

    # -- zone_sync hooks ------------------------------------------------------------------------

    def drain_pending(self, max_bytes: int, max_record_bytes: int | None = None) -> list[Pair]:
        """Pop queued pairs in order while their ``wire_bytes`` fit ``max_bytes``.

        A record bigger than ``max_record_bytes`` (default: the whole budget) could never be
        sent; it leaves the queue and counts in ``skipped_records``. The first record that fits
        in general but not in what is left of the budget stays at the head for the next call.
        """
        limit = max_bytes if max_record_bytes is None else max_record_bytes
        out: list[Pair] = []
        left = max_bytes
        for key in list(self._pending):
            if not self._alive(key):  # expired before it could be sent: never travels
                del self._pending[key]
                self.expired_unsent[key] = self.env.now
                continue
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
        heap = self._heap
        if heap and heap[0][0] <= self.env.now:
            self._expire_due()
        if expire_in_ms is not None and expire_in_ms <= 0:
            self.expired_on_arrival[key] = self.env.now
            return "ignored"
        old = self._records.get(key)
        if old is not None and (
            timestamp < old.timestamp or (timestamp == old.timestamp and origin <= old.origin)
        ):
            return "ignored"  # the common case of a snapshot: a record this node has already
        if self.conf.type == "ip" and _ip_network(key) is None:
            return "ignored"
        if expire_in_ms is None:
            expire_at = self._default_expiry()
        else:
            expire_at = self.env.now + expire_in_ms
        try:
            self._store(key, value, timestamp, origin, expire_at)
        except KeyvalZoneFull:
            self.records_dropped += 1
            self.dropped_keys[key] = self.env.now
            return "no_memory"
        # The key now holds someone else's write; only local writes are ever sent.
        self._pending.pop(key, None)
        self._changed()
        return "updated" if old is not None else "inserted"

    def expiries(self, pairs: list[Pair]) -> tuple[float, ...]:
        """When each of ``pairs`` (held here, as drained or snapshotted) expires, in sim time:
        what a zone_sync message carries beside them (:data:`NEVER`: no expiry)."""
        entries = self._entries
        return tuple([entries[p.key][EXPIRE_AT] for p in pairs])

    def apply_records(self, pairs: tuple[Pair, ...], expiries: tuple[float, ...], written_at: float) -> int:
        """Merge the pairs of one zone_sync message, written by the sender at ``written_at``,
        with the sender's expiry instants beside them.

        What :meth:`apply_remote` does for each record, done for the whole message at the one
        instant it arrives: expiry is brought up to now once, and the state file (when the zone
        has one) is written once. The sender's :class:`Pair` objects are stored as they are.
        Returns how many records changed the zone.
        """
        now = self.env.now
        if self._heap and self._heap[0][EXPIRE_AT] <= now:
            self._expire_due()
        w = self._watch
        if w is not None and w.heap and w.heap[0][EXPIRE_AT] <= now:
            w.expire(self._entries, self._records, now)
        held = self._records
        pending = self._pending
        check_ip = self.conf.type == "ip"
        timeout = self.conf.timeout_ms
        default_expiry = NEVER if timeout is None else now + timeout
        changed = 0
        for i in range(len(pairs)):
            pair = pairs[i]
            key = pair.key
            sent_expiry = expiries[i]
            if sent_expiry == NEVER:
                expire_at = default_expiry
            else:
                expire_in = sent_expiry - written_at
                if expire_in <= 0:
                    self.expired_on_arrival[key] = now
                    continue
                expire_at = now + expire_in
            old = held.get(key)
            if old is not None:
                timestamp = pair.timestamp
                if timestamp < old.timestamp or (timestamp == old.timestamp and pair.origin <= old.origin):
                    continue
            if check_ip and _ip_network(key) is None:
                continue
            try:
                self._store_at(pair, expire_at, now, old)
            except KeyvalZoneFull:
                self.records_dropped += 1
                self.dropped_keys[key] = now
                continue
            pending.pop(key, None)
            changed += 1
        if changed:
            self._changed()
        return changed

    def snapshot_expiring(self) -> tuple[list[Pair], list[float] | None]:
        """:meth:`snapshot` and, beside it, the expiry instant of each pair (one pass, no lookups)."""
        now = self.env.now
        pairs: list[Pair] = []
        expiries: list[float] = []
        for p, e in zip(self._records.values(), self._entries.values(), strict=True):
            exp = e[EXPIRE_AT]
            if now < exp:
                pairs.append(p)
                expiries.append(exp)
        return pairs, expiries

    def snapshot(self) -> list[Pair]:
        """Every live pair, local and received, for a peer that just (re)connected."""
        return self.snapshot_expiring()[0]


__all__ = [
    "INDEX_NODE",
    "NODE_OVERHEAD",
    "NEVER",
    "WIRE_OVERHEAD",
    "KeyvalFormatError",
    "KeyvalKeyExists",
    "KeyvalKeyNotFound",
    "KeyvalStateError",
    "KeyvalZone",
    "KeyvalZoneFull",
    "Pair",
    "Record",
    "SlotStats",
    "allocation_cost",
    "coerce_value",
]
