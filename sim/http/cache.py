"""Proxy cache zones: ``proxy_cache_path ... keys_zone=name:size`` and the ``proxy_cache_*`` rules.

A :class:`CacheZone` is one cache as nginx keeps it: a keys zone of *nodes* (one per key that
requests have asked for, stored or not) in least-recently-used order, and the *entries* (the
cached responses, "files on disk") that some of those nodes own. It decides the seven statuses
of ``$upstream_cache_status`` and keeps the API's counters under the API's names.

The request path talks to it in a few calls (the protocol, in nginx's own order):

1. ``lk = zone.lookup(key, now, proxy)``. ``lk.status`` is ``HIT`` (serve ``lk.entry``),
   ``UPDATING`` (serve the stale ``lk.entry`` while another request refreshes it), ``STALE``
   (``proxy_cache_background_update``: serve ``lk.entry`` now and refresh it in the background),
   ``MISS`` or ``EXPIRED`` (go to the backend; an expired entry rides along in ``lk.entry``).
   With ``proxy_cache_lock`` a MISS may come with ``lk.wait``, a simpy event: yield it, then
   call ``zone.lookup(key, now, proxy, retry=lk)`` again.
2. On a backend failure, ``lk.serve_stale(failure)`` says whether the expired entry may be
   served instead (and turns the status into ``STALE``); on a 304 to a conditional request,
   ``zone.revalidate(lk, now, valid_ms)`` refreshes the entry (``REVALIDATED``).
3. A cacheable response (``lk.cacheable``, ``valid_for(...)`` not None, ``proxy_no_cache``
   false) is written with ``zone.store(key, ...)``; ``zone.release(lk)`` ends the request's use
   of the cache either way (it drops the "being updated" mark and unused empty nodes).
4. ``zone.count(status, nbytes, written)`` adds the response to the counters.

``proxy_cache_bypass`` is decided before any of this with :func:`evaluate_bypass`: a bypassed
request is not looked up, and its response may still be written with ``store``.

Removal follows nginx's cache manager, done at once instead of on the manager's timer: entries
are evicted least recently used first while ``size >= max_size``; when the keys zone runs out
of nodes the oldest node is dropped and, from then on, the node count is kept under a
"watermark" of 7/8 of what fitted; nodes unused for ``inactive`` are removed at that exact sim
time. Sizes are accounted in file-system blocks as nginx does (``block_size``, 4096 by
default). The "cache loader" starts a minute after (re)start and walks the entries left on
disk, ``loader_files`` at a time with ``loader_sleep`` pauses; ``cold`` is true until it is done.
The per-request rules (key, bypass, validity) are in :mod:`sim.http.cache_rules`, the nodes,
entries and lookups in :mod:`sim.http.cache_nodes`; this module re-exports both.
See docs/cache.md for every choice made where nginx leaves room.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sim.conf.config import CachePathConf, ProxyConf
from sim.http.cache_nodes import CacheEntry, CacheNode, CacheStatus, Lookup, LruIndex
from sim.http.cache_rules import STALE_FAILURES, cache_key, evaluate_bypass, expand, failure_kind, valid_for

MIB = 1024 * 1024
#: Keys that one megabyte of keys zone holds in NGINX Plus (the docs: about 8000 in open-source
#: nginx, about 4000 with the extended information NGINX Plus keeps per key).
KEYS_PER_MIB = 4000
#: nginx activates the cache loader a minute after start.
LOADER_DELAY_MS = 60_000
#: A request waiting on ``proxy_cache_lock`` re-checks the lock at least this often (nginx polls).
LOCK_POLL_MS = 500
#: File-system block size: nginx accounts each cached file in whole blocks.
DEFAULT_BLOCK_SIZE = 4096

#: The API's counter blocks, in the order the API writes them.
STAT_FIELDS = ("hit", "stale", "updating", "revalidated", "miss", "expired", "bypass")
#: The blocks that also count what was written to the cache.
WRITTEN_FIELDS = ("miss", "expired", "bypass")
_STAT_OF_STATUS = {s: s.lower() for s in CacheStatus.ALL}
_DEFAULT_PROXY = ProxyConf()


def _new_stats() -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = {}
    for f in STAT_FIELDS:
        block = {"responses": 0, "bytes": 0}
        if f in WRITTEN_FIELDS:
            block["responses_written"] = 0
            block["bytes_written"] = 0
        stats[f] = block
    return stats


# ---------------------------------------------------------------------------------------------
# The zone


class CacheZone:
    """One ``proxy_cache_path`` cache: keys, entries, limits, loader, and the API counters.

    API view: ``size`` (bytes, whole blocks), ``max_size`` (bytes, or None when unlimited: the
    API then omits the field), ``cold``, and ``stats`` (dict of the seven blocks in API order).
    """

    def __init__(self, conf: CachePathConf, env, *, block_size: int = DEFAULT_BLOCK_SIZE):
        self.conf = conf
        self.name = conf.name
        self.env = env
        self.block_size = block_size
        self.size = 0
        self.cold = True
        self._stats = _new_stats()
        self._hits = 0  # fresh hits and their bytes, not yet folded into _stats["hit"]
        self._hit_bytes = 0
        self._nodes = LruIndex()
        self._inactive_ms = float(conf.inactive_ms)  # the conf's, read per request
        self._disk: dict[str, CacheEntry] = {}  # files not in the keys zone yet (after a restart)
        self._watermark = math.inf
        self._timer_gen = 0
        self._timer_pending = False
        self._loader_gen = 0
        self._loading = False
        self._start_loader()

    # -- API view ----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """The seven counter blocks in API order. Fresh hits are counted in two plain fields on
        the request path and folded into the ``hit`` block here, whenever the stats are read."""
        if self._hits:
            block = self._stats["hit"]
            block["responses"] += self._hits
            block["bytes"] += self._hit_bytes
            self._hits = self._hit_bytes = 0
        return self._stats

    @property
    def max_size(self) -> int | None:
        """``max_size=`` in bytes as nginx reports it (rounded down to whole blocks), or None."""
        ms = self.conf.max_size
        if ms is None:
            return None
        return ms // self.block_size * self.block_size

    @property
    def keys_capacity(self) -> int:
        """How many keys the keys zone holds (:data:`KEYS_PER_MIB` per MiB)."""
        return max(1, self.conf.keys_zone_size * KEYS_PER_MIB // MIB)

    def __len__(self) -> int:
        """Keys in the keys zone (with or without a stored entry)."""
        return len(self._nodes)

    def get(self, key: str) -> CacheEntry | None:
        """The stored entry of ``key`` without touching anything (for tests and reports)."""
        node = self._nodes.get(key)
        return node.entry if node is not None else None

    def entries(self):
        """(key, entry) pairs in the keys zone, least recently used first."""
        return [(n.key, n.entry) for n in self._nodes.in_order() if n.entry is not None]

    def count(self, status: str, nbytes: int, written: bool = False) -> None:
        """Count one response of ``status`` (``bytes`` += nbytes); ``written`` only for MISS,
        EXPIRED and BYPASS (the API has ``*_written`` nowhere else)."""
        block = self.stats[_STAT_OF_STATUS[status]]
        block["responses"] += 1
        block["bytes"] += nbytes
        if written:
            block["responses_written"] += 1
            block["bytes_written"] += nbytes

    def reset_statistics(self) -> None:
        """``DELETE /http/caches/{zone}``: the counters restart; size, max_size and cold stay."""
        self._stats = _new_stats()
        self._hits = self._hit_bytes = 0

    valid_for = staticmethod(valid_for)

    # -- the request path --------------------------------------------------------------------

    def lookup(
        self, key: str, now: float, proxy: ProxyConf | None = None, retry: Lookup | None = None
    ) -> Lookup:
        """Look ``key`` up for a request (see the module docstring for the protocol)."""
        if proxy is None:
            proxy = _DEFAULT_PROXY
        if retry is None:
            lk = Lookup(key, proxy)
        else:
            lk = retry
            lk.wait = None
            lk.entry = None
            lk.cacheable = True
        nodes = self._nodes
        node = nodes.get(key)
        if node is not None and node.expire <= now and not node.updating:
            self._delete(node)  # inactive: at the same instant, removal comes first
            node = None
        created = node is None
        if node is None:
            node = self._create_node(key, now)
            if node is None:
                # nginx answers 500 ("could not allocate node"); the request goes uncached instead
                lk.node = None
                lk.status = CacheStatus.MISS
                lk.cacheable = False
                return lk
            if self.cold:
                # before the loader has walked the disk, a request still finds the file there
                entry = self._disk.pop(key, None)
                if entry is not None:
                    node.entry = entry
                    self.size += entry.size
        else:
            nodes.touch(node)
            node.expire = now + self._inactive_ms
            if retry is None:
                node.uses += 1
        lk.node = node
        entry = node.entry
        if entry is not None:
            lk.entry = entry
            if entry.fresh(now):
                lk.status = CacheStatus.HIT
            else:
                self._expired(lk, node, proxy)
        elif node.uses < proxy.cache_min_uses:
            lk.status = CacheStatus.MISS
            lk.cacheable = False
        else:
            self._lock(lk, node, proxy, now)
        if created:
            self._enforce_limits(now)
        self._arm()
        return lk

    def hit(self, key: str, now: float) -> CacheEntry | None:
        """The entry to serve when :meth:`lookup` of ``key`` would be a plain fresh ``HIT``, with
        the same bookkeeping and the hit counted (the caller then has nothing to release);
        None, with nothing touched, when it would be anything else (then call ``lookup``).

        The shortcut for the request path: a warm cache answers most requests this way, and
        a hit needs neither a :class:`Lookup` nor the ``proxy`` settings.
        """
        node = self._nodes.get(key)
        if node is None:
            return None
        return self.hit_node(node, now)

    def node_of(self, key: str) -> CacheNode | None:
        """The node of ``key`` in the keys zone, if any (a caller may keep it for :meth:`hit_node`
        while its ``indexed`` stays true)."""
        return self._nodes.get(key)

    def hit_node(self, node: CacheNode, now: float) -> CacheEntry | None:
        """:meth:`hit` for the key of ``node``, a node of this zone's index (``node.indexed``)."""
        entry = node.entry
        if entry is None or now > entry.valid_until or (node.expire <= now and not node.updating):
            return None
        self._nodes.touch(node)
        node.expire = now + self._inactive_ms
        node.uses += 1
        if not self._timer_pending:
            self._arm()
        self._hits += 1
        self._hit_bytes += entry.nbytes
        return entry

    def _expired(self, lk: Lookup, node: CacheNode, proxy: ProxyConf) -> None:
        stale_updating = "updating" in proxy.cache_use_stale
        if node.updating:
            lk.status = CacheStatus.UPDATING if stale_updating else CacheStatus.EXPIRED
            return
        node.updating = True
        lk.updater = True
        lk.lock_time = node.lock_time
        if stale_updating and proxy.cache_background_update:
            lk.status = CacheStatus.STALE
        else:
            lk.status = CacheStatus.EXPIRED

    def _lock(self, lk: Lookup, node: CacheNode, proxy: ProxyConf, now: float) -> None:
        lk.status = CacheStatus.MISS
        if not proxy.cache_lock:
            return
        if not node.updating or node.lock_time <= now:
            node.updating = True
            node.lock_time = now + proxy.cache_lock_age_ms
            lk.updater = True
            lk.lock_time = node.lock_time
            return
        if lk.timed_out or proxy.cache_lock_timeout_ms <= 0:
            lk.cacheable = False
            return
        if lk.wait_deadline is None:
            lk.wait_deadline = now + proxy.cache_lock_timeout_ms
        lk.wait = self.env.event()
        self._poll_lock(lk, min(LOCK_POLL_MS, lk.wait_deadline - now))

    def _poll_lock(self, lk: Lookup, delay: float) -> None:
        env = self.env

        def tick(_event) -> None:
            now = env.now
            if lk.wait_deadline - now <= 0:
                lk.timed_out = True
                lk.wait.succeed("timeout")
                return
            node = lk.node
            left = node.lock_time - now if node is not None else 0.0
            if node is not None and node.updating and left > 0:
                env.timeout(min(LOCK_POLL_MS, left)).callbacks.append(tick)
                return
            lk.wait.succeed("retry")

        env.timeout(delay).callbacks.append(tick)

    def release(self, lk: Lookup) -> None:
        """The request is done with the cache (after ``store`` or instead of it; always safe)."""
        node = lk.node
        if node is None:
            return
        if lk.updater and node.lock_time == lk.lock_time:
            node.updating = False
        lk.updater = False
        if (
            node.entry is None
            and not node.updating
            and lk.proxy.cache_min_uses == 1
            and self._nodes.get(lk.key) is node
        ):
            self._delete(node)

    def store(
        self,
        key: str,
        status_code: int,
        size_bytes: int,
        now: float,
        valid_ms: int | None,
        version=None,
    ) -> bool:
        """Write (or replace) the entry of ``key``; returns whether it was written.

        ``size_bytes`` is headers plus body. The entry becomes the most recently used, the key's
        "being updated" mark is cleared, and entries are then evicted least recently used first
        while ``size >= max_size`` (which may evict the new entry itself when it alone is that
        big, as nginx's manager would).
        """
        if valid_ms is None:
            return False
        node = self._nodes.get(key)
        if node is None:
            self._disk.pop(key, None)  # a file left from before a restart is overwritten
            node = self._create_node(key, now)
            if node is None:
                return False
        else:
            self._nodes.touch(node)
            node.expire = now + self._inactive_ms
        block = self.block_size
        size = -(-size_bytes // block) * block
        old = node.entry
        if old is not None:
            self.size -= old.size
        node.entry = CacheEntry(status_code, size_bytes, size, now + valid_ms, now, version)
        self.size += size
        node.updating = False
        self._enforce_limits(now)
        self._arm()
        return True

    def revalidate(self, lk: Lookup, now: float, valid_ms: int | None) -> None:
        """The backend answered 304 to the conditional request of an EXPIRED lookup.

        The status becomes REVALIDATED and the cached entry is served; when ``valid_ms`` is not
        None (from the 304's headers, else ``proxy_cache_valid`` for the cached status) the entry
        is fresh again for that long, unless it was replaced or removed meanwhile.
        """
        lk.status = CacheStatus.REVALIDATED
        node = self._nodes.get(lk.key)
        if valid_ms is not None and node is not None and node.entry is lk.entry and lk.entry is not None:
            lk.entry.valid_until = now + valid_ms
            lk.entry.date = now
        self.release(lk)

    # -- keys zone, limits, inactive ---------------------------------------------------------

    def _create_node(self, key: str, now: float) -> CacheNode | None:
        nodes = self._nodes
        if len(nodes) >= self.keys_capacity:
            # out of keys-zone memory: remember how many fitted, drop one old node, try again
            count = len(nodes)
            self._watermark = float(count - count // 8)
            self._evict(now, lambda _node: len(nodes) >= count)
            if len(nodes) >= self.keys_capacity:
                return None
        node = CacheNode(key, now + self._inactive_ms)
        nodes.add(node)
        return node

    def _delete(self, node: CacheNode) -> None:
        self._nodes.remove(node)
        if node.entry is not None:
            self.size -= node.entry.size

    def _evict(self, now: float, more: Callable[[CacheNode], bool]) -> int:
        """Remove least recently used nodes while ``more(node)`` holds for the oldest; nodes being
        updated are in use and, as nginx does, moved to the recent end instead (once round).
        Returns how many were removed."""
        nodes = self._nodes
        removed = 0
        first_skipped = None
        while True:
            node = nodes.first()
            if node is None or node is first_skipped or not more(node):
                break
            if node.updating:
                nodes.touch(node)
                node.expire = now + self._inactive_ms
                if first_skipped is None:
                    first_skipped = node
                continue
            self._delete(node)
            removed += 1
        return removed

    def _enforce_limits(self, now: float) -> None:
        max_size = self.max_size
        if max_size is not None and self.size >= max_size:
            self._evict(now, lambda _node: self.size >= max_size)
        if len(self._nodes) >= self._watermark:
            self._evict(now, lambda _node: len(self._nodes) >= self._watermark)

    def purge_inactive(self, now: float) -> int:
        """Remove the nodes not used for ``inactive`` (last use + inactive <= now); returns how many."""
        return self._evict(now, lambda node: node.expire <= now)

    def _arm(self, min_delay: float = 0.0) -> None:
        """Keep one timer pending at the oldest node's inactivity deadline."""
        head = self._nodes.first()
        if self._timer_pending or head is None:
            return
        delay = head.expire - self.env.now
        if delay <= 0:
            # only a node in use, renewed with inactive=0, is due already: wait a manager sleep
            # rather than spin at one instant; any later deadline is kept exactly
            delay = min_delay
        self._timer_pending = True
        gen = self._timer_gen

        def fire(_event) -> None:
            if gen != self._timer_gen:
                return
            self._timer_pending = False
            self.purge_inactive(self.env.now)
            # an in-use node renewed with inactive=0 must not spin at one instant
            self._arm(min_delay=max(1, self.conf.manager_sleep_ms))

        self.env.timeout(max(delay, 0.0)).callbacks.append(fire)

    def _rearm(self) -> None:
        self._timer_gen += 1
        self._timer_pending = False
        self._arm()

    # -- loader, reload, restart -------------------------------------------------------------

    def _start_loader(self) -> None:
        self._loader_gen += 1
        self._loading = False
        self.env.process(self._loader(self._loader_gen))

    def _loader(self, gen: int):
        yield self.env.timeout(LOADER_DELAY_MS)
        if gen != self._loader_gen:
            return
        self._loading = True
        files = 0
        for key in list(self._disk):  # the directory listing when the walk starts
            if gen != self._loader_gen:
                return
            entry = self._disk.pop(key, None)
            if entry is None:
                continue  # a request read it (or overwrote it) in the meantime
            now = self.env.now
            if len(self._nodes) >= self.keys_capacity:
                # the loader does not force room: the file is deleted and the watermark noted
                count = len(self._nodes)
                self._watermark = float(count - count // 8)
            else:
                node = CacheNode(key, now + self._inactive_ms)
                node.entry = entry
                self._nodes.add(node)
                self.size += entry.size
                self._enforce_limits(now)
                self._arm()
            files += 1
            if files >= self.conf.loader_files:
                yield self.env.timeout(self.conf.loader_sleep_ms)
                files = 0
                if gen != self._loader_gen:
                    return
        self.cold = False
        self._loading = False

    def reload(self, conf: CachePathConf) -> None:
        """nginx reload: the zone and its entries survive; new limits apply from now.

        A loader that has not started yet starts a minute after the reload; one that is walking
        goes on.
        """
        old = self.conf
        self.conf = conf
        self._inactive_ms = float(conf.inactive_ms)
        if conf.inactive_ms != old.inactive_ms:
            self._rearm()
        self._enforce_limits(self.env.now)
        self._arm()
        if self.cold and not self._loading:
            self._start_loader()

    def restart(self) -> None:
        """The node crashed and came back: shared memory is gone, the files on disk are not.

        Keys, counters and size start from zero, ``cold`` is true, and the loader walks the
        surviving entries a minute later (a request for one of them finds it before that).
        """
        for node in self._nodes.in_order():
            node.updating = False  # the requests that held it died with the workers
            node.older = node.newer = None
            node.indexed = False
            if node.entry is not None:
                self._disk[node.key] = node.entry
        self._nodes = LruIndex()
        self.size = 0
        self._stats = _new_stats()
        self._hits = self._hit_bytes = 0
        self._watermark = math.inf
        self.cold = True
        self._rearm()
        self._start_loader()


__all__ = [
    "DEFAULT_BLOCK_SIZE", "KEYS_PER_MIB", "LOADER_DELAY_MS", "LOCK_POLL_MS", "MIB",
    "STALE_FAILURES", "STAT_FIELDS", "WRITTEN_FIELDS",
    "CacheEntry", "CacheNode", "CacheStatus", "CacheZone", "Lookup", "LruIndex",
    "cache_key", "evaluate_bypass", "expand", "failure_kind", "valid_for",
]
