"""nginx's slab allocator: how a shared memory zone hands out memory, and what ``/slabs/`` shows.

Every shared memory zone (upstream zones, keyval zones, limit_req and limit_conn zones, cache
keys zones ...) is carved by nginx's slab allocator, and the API reports its state per zone:
pages used and free, and per slot size the slots used and free with the allocation attempts
(``reqs``) and failures (``fails``). This module reproduces that arithmetic for a 64-bit build
with 4 KiB pages:

* The zone starts with the pool header, one list head and one statistics record per slot
  size, then one 24-byte descriptor per page; the pages proper begin at the next page boundary.
  :func:`usable_pages` works the count out the way nginx does at start-up.
* A request of up to half a page (2048 bytes) is rounded up to a power of two, at least 8, and
  takes a slot of that size. Slots are cut from pages dedicated to one size. Sizes below 64
  keep their occupancy bitmap inside the page, so a page holds a few slots fewer than
  ``4096 / size`` (504 of 8 bytes, 254 of 16, 127 of 32) -- the counts real NGINX Plus output
  shows. A page goes back to the free pool when its last slot is freed.
* A larger request takes whole contiguous pages and is not counted under any slot size, as in
  nginx.

Handles are integer offsets into the pages area; they mean nothing outside this pool.
"""

from __future__ import annotations

PAGE_SIZE = 4096
MIN_SHIFT = 3  # the smallest slot is 8 bytes
MAX_SLOT = PAGE_SIZE // 2  # larger requests take whole pages
EXACT_SIZE = 64  # from this size up the page descriptor holds the bitmap, not the page
SLOT_SIZES: tuple[int, ...] = tuple(1 << s for s in range(MIN_SHIFT, 12))  # 8 .. 2048

# Byte sizes of nginx's bookkeeping on a 64-bit build (ngx_slab_pool_t, ngx_slab_page_t,
# ngx_slab_stat_t). Only their sum matters: it decides how many pages a zone of a given size
# gets, and with these values a 256k zone has 63 pages, as real output shows.
POOL_HEADER_BYTES = 200
PAGE_DESCRIPTOR_BYTES = 24
SLOT_LIST_HEAD_BYTES = 24
SLOT_STATS_BYTES = 32
_HEADER_BYTES = POOL_HEADER_BYTES + len(SLOT_SIZES) * (SLOT_LIST_HEAD_BYTES + SLOT_STATS_BYTES)


class SlabError(ValueError):
    """A handle that this pool did not hand out, or one freed twice."""


def usable_pages(size: int) -> int:
    """How many pages a shared memory zone of ``size`` bytes offers for allocation."""
    pages = max(0, (size - _HEADER_BYTES) // (PAGE_SIZE + PAGE_DESCRIPTOR_BYTES))
    descriptors_end = _HEADER_BYTES + pages * PAGE_DESCRIPTOR_BYTES
    start = -(-descriptors_end // PAGE_SIZE) * PAGE_SIZE  # the pages begin on a page boundary
    return max(0, min(pages, (size - start) // PAGE_SIZE))


def slot_size(nbytes: int) -> int | None:
    """The slot size a request of ``nbytes`` takes, or None when it takes whole pages."""
    if nbytes > MAX_SLOT:
        return None
    if nbytes <= SLOT_SIZES[0]:
        return SLOT_SIZES[0]
    return 1 << (nbytes - 1).bit_length()


def slots_per_page(size: int) -> int:
    """Usable slots in one page dedicated to ``size``-byte slots."""
    n = PAGE_SIZE // size
    if size < EXACT_SIZE:
        bitmap_bytes = n // 8
        n -= -(-bitmap_bytes // size)
    return n


class _SlotClass:
    """The pages of one slot size, and the statistics the API shows for it."""

    __slots__ = ("size", "per_page", "partial", "used", "total", "reqs", "fails")

    def __init__(self, size: int):
        self.size = size
        self.per_page = slots_per_page(size)
        # Pages of this size with at least one free slot; a dict is an ordered set here, so the
        # choice of page is deterministic.
        self.partial: dict[int, None] = {}
        self.used = 0
        self.total = 0  # slots in all pages dedicated to this size
        self.reqs = 0
        self.fails = 0


class SlabPool:
    """The slab allocator of one shared memory zone of ``size`` bytes."""

    def __init__(self, size: int):
        self.size = size
        self.pages_total = usable_pages(size)
        self._free_pages = self.pages_total
        self._page_is_free = bytearray(b"\x01") * self.pages_total
        self._first_free_hint = 0  # no free page below this index
        # What each page holds: a slot size (> 0), the length of a run it heads (< 0), 0 when
        # free or the tail of a run.
        self._page_kind = [0] * self.pages_total
        self._page_free_slots: dict[int, list[int]] = {}
        self._page_slot_used: dict[int, bytearray] = {}
        self._classes = {s: _SlotClass(s) for s in SLOT_SIZES}

    # -- allocation ---------------------------------------------------------------------------

    def alloc(self, nbytes: int) -> int | None:
        """Allocate ``nbytes``; a handle for :meth:`free`, or None when the zone is out of memory."""
        size = slot_size(nbytes)
        if size is None:
            npages = -(-nbytes // PAGE_SIZE)
            page = self._take_pages(npages)
            if page is None:
                return None
            self._page_kind[page] = -npages
            return page * PAGE_SIZE
        cls = self._classes[size]
        cls.reqs += 1
        if cls.partial:
            page = next(iter(cls.partial))
        else:
            page = self._take_pages(1)
            if page is None:
                cls.fails += 1
                return None
            self._page_kind[page] = size
            # Popping from the end hands out slot 0 first.
            self._page_free_slots[page] = list(range(cls.per_page - 1, -1, -1))
            self._page_slot_used[page] = bytearray(cls.per_page)
            cls.partial[page] = None
            cls.total += cls.per_page
        free_slots = self._page_free_slots[page]
        slot = free_slots.pop()
        if not free_slots:
            del cls.partial[page]
        self._page_slot_used[page][slot] = 1
        cls.used += 1
        return page * PAGE_SIZE + slot * size

    def free(self, handle: int) -> None:
        """Give back what :meth:`alloc` returned as ``handle``."""
        page, offset = divmod(handle, PAGE_SIZE)
        if not 0 <= page < self.pages_total or handle < 0:
            raise SlabError(f"handle {handle} is outside the pool")
        kind = self._page_kind[page]
        if kind < 0:
            if offset:
                raise SlabError(f"handle {handle} is inside a run of pages")
            self._page_kind[page] = 0
            self._release_pages(page, -kind)
            return
        if kind == 0:
            raise SlabError(f"handle {handle} points to a free page")
        cls = self._classes[kind]
        slot, rest = divmod(offset, kind)
        used = self._page_slot_used[page]
        if rest or slot >= cls.per_page or not used[slot]:
            raise SlabError(f"handle {handle} is not an allocated {kind}-byte slot")
        used[slot] = 0
        cls.used -= 1
        free_slots = self._page_free_slots[page]
        free_slots.append(slot)
        if len(free_slots) == cls.per_page:
            # The last slot of the page came back: the page returns to the free pool.
            cls.partial.pop(page, None)
            cls.total -= cls.per_page
            del self._page_free_slots[page]
            del self._page_slot_used[page]
            self._page_kind[page] = 0
            self._release_pages(page, 1)
        elif len(free_slots) == 1:
            cls.partial[page] = None

    def _take_pages(self, npages: int) -> int | None:
        # First fit from the lowest address. nginx keeps a free list instead; the counts the
        # API shows are the same, only which run a large request lands in may differ.
        if npages > self._free_pages:
            return None
        page = self._page_is_free.find(b"\x01" * npages, self._first_free_hint)
        if page < 0:
            return None
        self._page_is_free[page : page + npages] = bytes(npages)
        self._free_pages -= npages
        if npages == 1 or page == self._first_free_hint:
            # Everything below the run just taken is in use.
            self._first_free_hint = page + npages
        return page

    def _release_pages(self, page: int, npages: int) -> None:
        self._page_is_free[page : page + npages] = b"\x01" * npages
        self._free_pages += npages
        self._first_free_hint = min(self._first_free_hint, page)

    # -- statistics ---------------------------------------------------------------------------

    @property
    def pages_free(self) -> int:
        return self._free_pages

    @property
    def pages_used(self) -> int:
        return self.pages_total - self._free_pages

    def slot_stats(self, size: int) -> dict[str, int]:
        """``{"used", "free", "reqs", "fails"}`` of one slot size."""
        cls = self._classes[size]
        return {"used": cls.used, "free": cls.total - cls.used, "reqs": cls.reqs, "fails": cls.fails}

    def stats(self) -> dict:
        """The zone as ``/slabs/{zone}`` shows it; every slot size from 8 to 2048 is listed."""
        return {
            "pages": {"used": self.pages_used, "free": self._free_pages},
            "slots": {str(size): self.slot_stats(size) for size in SLOT_SIZES},
        }

    def reset_statistics(self) -> None:
        """DELETE ``/slabs/{zone}``: zero ``reqs`` and ``fails`` of every slot size."""
        for cls in self._classes.values():
            cls.reqs = 0
            cls.fails = 0
