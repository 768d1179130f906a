"""How a keyval zone holds one pair: a :class:`Pair` shared by every node, and an entry per node.

A write makes one :class:`Pair` (key, value, timestamp, origin, its size on the zone_sync wire
and its digest term), on the node that wrote it. zone_sync carries that object to the other
nodes and each stores the same object: nothing in it differs from node to node. What does
differ, when the pair expires on this node and where its slab memory is, is a small tuple, an
*entry*, laid out as the constants below say.

Why two objects and not one per node: a 50-node mesh merges millions of records. An object of
a class is walked by every collection of CPython's cyclic collector it lives through (that was
a third of a large zone_sync run), while a tuple of numbers and strings stops being tracked at
the first collection it survives. An entry is also its own expiry-heap item (it orders by
expiry instant, then key), and a heap item is current while the zone's table holds that very
tuple. :class:`Record` is the readable view of a pair on one node, for everything outside the
store's hot paths (the API, the checker, tests).
"""

from __future__ import annotations

import math
from typing import Final

#: sim time (ms) the pair expires at on this node; :data:`NEVER` for a zone without timeout
EXPIRE_AT: Final = 0
KEY: Final = 1
#: slab handles of the pair's node and of its lookup-index node (-1: none)
NODE: Final = 2
INDEX: Final = 3

#: ``expire_at`` of a pair that never expires
NEVER: Final = math.inf

#: An entry: ``(expire_at, key, node, index)``, of types ``(float, str, int, int)``. Typed as a
#: plain tuple on purpose: mypyc unpacks a tuple of declared item types into a C struct and
#: boxes it again, as a new tuple, each time it is stored, which would make a copy for the
#: table and one for each expiry heap where one object is shared.
Entry = tuple


class Pair:
    """What one write made: ``value`` under ``key``, written at ``timestamp`` (the writer's clock,
    ms) by ``origin``. Never changed once made; every node that holds the write holds this object.

    ``wire_bytes`` is what it takes in a zone_sync buffer (a fixed part and the key and value in
    UTF-8) and ``digest`` its term of a watch's digest (:func:`record_hash`).
    """

    __slots__ = ("key", "value", "timestamp", "origin", "wire_bytes", "digest")

    def __init__(self, key: str, value: str, timestamp: float, origin: str, wire_bytes: int, digest: int) -> None:
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.origin = origin
        self.wire_bytes = wire_bytes
        self.digest = digest

    def __repr__(self) -> str:
        return (f"Pair(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp!r}, "
                f"origin={self.origin!r}, wire_bytes={self.wire_bytes!r})")


class Record:
    """One pair as a node holds it: written at ``timestamp`` (origin node's clock, ms) by ``origin``.

    ``expire_at`` is sim time (ms) or None for a zone without timeout; ``size`` is the slab
    memory the pair holds on this node (its slot-rounded allocations); ``wire_bytes`` what it
    takes in a zone_sync buffer. A view made on demand (:meth:`sim.zones.keyval.KeyvalZone.record`).
    """

    __slots__ = ("key", "value", "timestamp", "origin", "expire_at", "size", "wire_bytes")

    def __init__(self, key: str, value: str, timestamp: float, origin: str, expire_at: float | None,
                 size: int, wire_bytes: int = 0) -> None:
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.origin = origin
        self.expire_at = expire_at
        self.size = size
        self.wire_bytes = wire_bytes

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


def record_hash(key: str, value: str, timestamp: float, origin: str) -> int:
    """The digest term of one pair: equal records on two nodes give equal terms."""
    return hash((key, value, timestamp, origin))
