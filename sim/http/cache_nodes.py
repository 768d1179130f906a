"""What a cache zone is made of, and one request's hold on it.

The values of ``$upstream_cache_status`` (:class:`CacheStatus`); a stored response
(:class:`CacheEntry`, a file in the cache directory); a key in the keys zone
(:class:`CacheNode`, nginx's ``ngx_http_file_cache_node_t``) and the zone's LRU queue of them
(:class:`LruIndex`); and the per-request cache state (:class:`Lookup`) that
:meth:`sim.http.cache.CacheZone.lookup` hands out. :mod:`sim.http.cache` re-exports them all.
"""

from __future__ import annotations

import math
from typing import Any, Final

from sim.conf.config import ProxyConf


class CacheStatus:
    """The values of ``$upstream_cache_status``."""

    MISS: Final = "MISS"
    BYPASS: Final = "BYPASS"
    EXPIRED: Final = "EXPIRED"
    STALE: Final = "STALE"
    UPDATING: Final = "UPDATING"
    REVALIDATED: Final = "REVALIDATED"
    HIT: Final = "HIT"
    ALL: Final = (MISS, BYPASS, EXPIRED, STALE, UPDATING, REVALIDATED, HIT)


class CacheEntry:
    """A cached response (a file in the cache directory).

    ``nbytes`` is what the caller stored (headers and body), ``size`` the same in whole blocks
    (what ``size`` of the zone counts). ``version`` is opaque to the cache: the caller stores the
    backend's content version and compares it on revalidation.
    """

    __slots__ = ("status_code", "nbytes", "size", "valid_until", "date", "version")

    def __init__(self, status_code: int, nbytes: int, size: int, valid_until: float, date: float,
                 version: Any = None) -> None:
        self.status_code = status_code
        self.nbytes = nbytes
        self.size = size
        self.valid_until = valid_until
        self.date = date
        self.version = version

    def fresh(self, now: float) -> bool:
        # nginx calls an entry expired only once its validity time is strictly in the past
        return now <= self.valid_until

    def __repr__(self) -> str:
        return f"CacheEntry({self.status_code}, {self.nbytes}B, valid_until={self.valid_until})"


class CacheNode:
    """One key in the keys zone: use count, inactivity deadline, the entry if stored, update mark."""

    __slots__ = ("key", "uses", "expire", "entry", "updating", "lock_time", "older", "newer", "indexed")

    def __init__(self, key: str, expire: float):
        self.key = key
        self.uses = 1
        self.expire = expire  # last access + inactive
        self.entry: CacheEntry | None = None
        self.updating = False  # a request is fetching this key (the lock, or an expired refresh)
        self.lock_time = -math.inf  # proxy_cache_lock: when another request may take over
        # neighbours in the zone's LRU order (see LruIndex); None outside an index
        self.older: CacheNode | None = None
        self.newer: CacheNode | None = None
        self.indexed = False  # in its zone's index now (a holder of the node can check)

    def __repr__(self) -> str:
        return f"CacheNode({self.key!r}, uses={self.uses}, entry={self.entry!r}, updating={self.updating})"


class LruIndex:
    """The nodes of a keys zone by key, and in least recently used order (nginx's LRU queue).

    A dict finds a node by key; the order is a doubly linked list through the nodes' ``older``
    and ``newer`` fields, so that using a node (:meth:`touch`) moves it to the recent end with a
    few pointer writes instead of a hash lookup.
    """

    def __init__(self) -> None:
        self.by_key: dict[str, CacheNode] = {}
        self.oldest: CacheNode | None = None
        self.newest: CacheNode | None = None

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: str) -> CacheNode | None:
        return self.by_key.get(key)

    def add(self, node: CacheNode) -> None:
        """Index ``node`` (its key must be new) as the most recently used."""
        self.by_key[node.key] = node
        node.indexed = True
        self._link_newest(node)

    def remove(self, node: CacheNode) -> None:
        del self.by_key[node.key]
        node.indexed = False
        self._unlink(node)

    def touch(self, node: CacheNode) -> None:
        """``node`` was used: it becomes the most recently used."""
        if node is not self.newest:
            self._unlink(node)
            self._link_newest(node)

    def first(self) -> CacheNode | None:
        """The least recently used node."""
        return self.oldest

    def in_order(self) -> list[CacheNode]:
        """All nodes, least recently used first."""
        out: list[CacheNode] = []
        node = self.oldest
        while node is not None:
            out.append(node)
            node = node.newer
        return out

    def _link_newest(self, node: CacheNode) -> None:
        last = self.newest
        node.older = last
        node.newer = None
        if last is None:
            self.oldest = node
        else:
            last.newer = node
        self.newest = node

    def _unlink(self, node: CacheNode) -> None:
        older = node.older
        newer = node.newer
        if older is None:
            self.oldest = newer
        else:
            older.newer = newer
        if newer is None:
            self.newest = older
        else:
            newer.older = older
        node.older = node.newer = None


class Lookup:
    """One request's use of the cache (nginx's per-request cache state).

    ``status``: the cache status so far. ``entry``: the entry to serve (HIT, UPDATING, STALE)
    or the expired one kept for ``proxy_cache_use_stale`` and revalidation (EXPIRED).
    ``updater``: this request holds the key's "being updated" mark. ``cacheable``: the response
    may be written (False when ``proxy_cache_min_uses`` is not reached yet or the lock wait timed
    out). ``wait``: a simpy event to wait on (``proxy_cache_lock``), whose value is ``"retry"``
    (look up again) or ``"timeout"`` (look up again: it may now hit; otherwise go uncached).
    """

    __slots__ = (
        "key",
        "proxy",
        "status",
        "entry",
        "updater",
        "cacheable",
        "wait",
        "node",
        "lock_time",
        "wait_deadline",
        "timed_out",
    )

    def __init__(self, key: str, proxy: ProxyConf):
        self.key = key
        self.proxy = proxy
        self.status = CacheStatus.MISS
        self.entry: CacheEntry | None = None
        self.updater = False
        self.cacheable = True
        self.wait: Any = None  # a simpy event while the request waits for the lock
        self.node: CacheNode | None = None
        self.lock_time = -math.inf
        self.wait_deadline: float | None = None
        self.timed_out = False

    @property
    def conditional(self) -> bool:
        """Whether the backend request should carry If-Modified-Since/If-None-Match (revalidate)."""
        return self.status == CacheStatus.EXPIRED and self.entry is not None and self.proxy.cache_revalidate

    def serve_stale(self, failure: str) -> bool:
        """After a backend failure (``"error"``, ``"timeout"``, ``"http_502"`` ...): may the expired
        entry be served? If so the status becomes STALE. Only an EXPIRED lookup has one to serve."""
        if (
            self.status == CacheStatus.EXPIRED
            and self.entry is not None
            and failure in self.proxy.cache_use_stale
        ):
            self.status = CacheStatus.STALE
            return True
        return False

    def __repr__(self) -> str:
        return f"Lookup({self.key!r}, {self.status}, updater={self.updater}, cacheable={self.cacheable})"
