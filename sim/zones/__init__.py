"""Shared memory zones and what lives in them: the slab allocator (slabs), status-zone counters
(status), keyval zones (keyval), limit_req / limit_conn zones (limits) and the resolver with its
cache and status zone (resolver)."""
