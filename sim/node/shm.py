"""A node's shared memory zones as the ``/slabs/`` view sees them: what the slab allocators hold.

Keyval and limit zones allocate from their own pools as they change. Upstream zones and cache
keys zones do not allocate as they go; :class:`SharedMemory` keeps one :class:`SlabPool` per such
zone and brings it up to date when asked: one set of allocations per live peer (freed when the
peer goes) and one node per key of a keys zone. It also takes the memory of a server that is
being added at run time before the server exists, so that a full zone refuses the addition as
nginx does. A new process (a restart) starts with a new :class:`SharedMemory`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sim.http.cache import CacheZone
from sim.zones.slabs import SlabPool


class SharedMemory:
    """The slab pools of one nginx process's upstream zones and cache keys zones."""

    #: bytes nginx allocates in an upstream zone per peer (the peer structure with the Plus
    #: statistics, its sockaddr) besides the two name strings; an estimate, see docs/decisions.md
    PEER_STRUCT_BYTES = 344
    SOCKADDR_BYTES = 28
    #: bytes of one cache keys-zone node (ngx_http_file_cache_node_t with the Plus extras)
    CACHE_NODE_BYTES = 120

    def __init__(self) -> None:
        self.pools: dict[str, SlabPool] = {}  # upstream zones and cache keys zones
        self.held: dict[str, dict] = {}
        self.reserved: dict[str, dict] = {}  # memory taken for servers being added

    def slab_pools(self, upstreams: Iterable, caches: dict[str, CacheZone],
                   zones: Iterable[dict]) -> dict[str, SlabPool]:
        """Every shared memory zone with a slab allocator, by zone name, with its current use:
        the pools of ``upstreams`` (those with a zone) and ``caches`` brought up to date, and the
        pools of the keyval and limit zones in ``zones`` (dicts of zones by name) as they are."""
        pools: dict[str, SlabPool] = {}
        for up in upstreams:
            if up.zone is None:
                continue
            pool = self.zone_pool(up.zone, up.conf.zone_size or 32 * 1024)
            self.sync_peer_allocations(up.zone, pool, up)
            pools[up.zone] = pool
        for name, cz in caches.items():
            pool = self.zone_pool("cache:" + name, cz.conf.keys_zone_size)
            self.sync_count("cache:" + name, pool, len(cz), self.CACHE_NODE_BYTES)
            pools[name] = pool
        for named in zones:
            for name, z in named.items():
                pools[name] = z.slab
        return pools

    def zone_pool(self, key: str, size: int) -> SlabPool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = SlabPool(size)
            self.held[key] = {}  # what the model holds in the pool: peer key -> handles
        return pool

    def peer_allocation_sizes(self, name: str, server: str) -> tuple[int, ...]:
        return (self.PEER_STRUCT_BYTES, len(name) + 1, len(server) + 1, self.SOCKADDR_BYTES)

    def sync_peer_allocations(self, zone: str, pool: SlabPool, up) -> None:
        held = self.held[zone]
        reserved = self.reserved.setdefault(zone, {})
        live = {(up.name, p.id): p for p in up.peers}
        for key in [k for k in held if k[0] == up.name and k not in live]:
            for h in held.pop(key):
                pool.free(h)
        for key, p in live.items():
            if key in held:
                continue
            handles = reserved.pop((up.name, p.name), None)
            if handles is None:
                handles = []
                for nbytes in self.peer_allocation_sizes(p.name, p.server):
                    h = pool.alloc(nbytes)
                    if h is not None:
                        handles.append(h)
            held[key] = handles
        # a reservation lives only within one synchronous add: one left now belongs to a
        # server that was added and removed between two syncs (or whose add failed)
        for rkey in [k for k in reserved if k[0] == up.name]:
            for h in reserved.pop(rkey):
                pool.free(h)

    def reserve_peer_memory(self, up, name: str, server: str) -> bool:
        """Allocate a server's memory in its upstream zone before it is added (False: zone full)."""
        pool = self.zone_pool(up.zone, up.conf.zone_size or 32 * 1024)
        self.sync_peer_allocations(up.zone, pool, up)
        handles: list = []
        for nbytes in self.peer_allocation_sizes(name, server):
            h = pool.alloc(nbytes)
            if h is None:
                for taken in handles:
                    pool.free(taken)
                return False
            handles.append(h)
        self.reserved.setdefault(up.zone, {})[(up.name, name)] = handles
        return True

    def sync_count(self, zone: str, pool: SlabPool, count: int, nbytes: int) -> None:
        held = self.held[zone].setdefault("nodes", [])
        while len(held) > count:
            pool.free(held.pop())
        while len(held) < count:
            h = pool.alloc(nbytes)
            if h is None:
                break
            held.append(h)
