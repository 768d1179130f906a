import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.zones.slabs import SLOT_SIZES, SlabError, SlabPool, slot_size, slots_per_page, usable_pages


def test_zone_sizes_give_the_page_counts_real_nginx_reports():
    assert usable_pages(256 * 1024) == 63
    assert usable_pages(1000 * 1024 * 1024) == 254508
    assert usable_pages(32 * 1024) == 7
    assert usable_pages(1024 * 1024) == 254
    assert usable_pages(4096) == 0


def test_requests_round_up_to_a_power_of_two_slot_from_8_to_2048():
    assert slot_size(0) == 8
    assert slot_size(8) == 8
    assert slot_size(9) == 16
    assert slot_size(30) == 32
    assert slot_size(84) == 128
    assert slot_size(2048) == 2048
    assert slot_size(2049) is None


def test_small_slot_pages_lose_the_slots_their_bitmap_occupies():
    assert [slots_per_page(s) for s in SLOT_SIZES] == [504, 254, 127, 64, 32, 16, 8, 4, 2]


def test_ten_allocations_of_30_bytes_share_one_32_byte_page():
    pool = SlabPool(256 * 1024)
    for _ in range(10):
        assert pool.alloc(30) is not None
    stats = pool.stats()
    assert stats["pages"] == {"used": 1, "free": 62}
    assert stats["slots"]["32"] == {"used": 10, "free": 117, "reqs": 10, "fails": 0}


def test_stats_list_every_slot_size_even_unused_ones():
    stats = SlabPool(64 * 1024).stats()
    assert list(stats["slots"]) == ["8", "16", "32", "64", "128", "256", "512", "1024", "2048"]
    assert stats["slots"]["2048"] == {"used": 0, "free": 0, "reqs": 0, "fails": 0}


def test_a_full_page_takes_a_second_page_for_the_next_slot():
    pool = SlabPool(256 * 1024)
    for _ in range(33):
        pool.alloc(100)
    assert pool.pages_used == 2
    assert pool.slot_stats(128) == {"used": 33, "free": 31, "reqs": 33, "fails": 0}


def test_large_requests_take_whole_pages_and_count_under_no_slot():
    pool = SlabPool(256 * 1024)
    handle = pool.alloc(5000)
    assert handle is not None
    assert pool.pages_used == 2
    assert all(pool.slot_stats(s)["reqs"] == 0 for s in SLOT_SIZES)
    pool.free(handle)
    assert pool.pages_used == 0


def test_out_of_memory_fails_are_counted_under_the_slot_size():
    pool = SlabPool(32 * 1024)  # 7 pages
    handles = [pool.alloc(2048) for _ in range(14)]
    assert None not in handles
    assert pool.alloc(1500) is None
    assert pool.alloc(5000) is None
    assert pool.stats()["pages"] == {"used": 7, "free": 0}
    assert pool.slot_stats(2048) == {"used": 14, "free": 0, "reqs": 15, "fails": 1}


def test_a_page_returns_to_free_when_its_last_slot_is_freed():
    pool = SlabPool(256 * 1024)
    a = pool.alloc(64)
    b = pool.alloc(64)
    pool.free(a)
    assert pool.pages_used == 1
    assert pool.slot_stats(64) == {"used": 1, "free": 63, "reqs": 2, "fails": 0}
    pool.free(b)
    assert pool.stats()["pages"] == {"used": 0, "free": 63}
    assert pool.slot_stats(64) == {"used": 0, "free": 0, "reqs": 2, "fails": 0}


def test_freeing_twice_or_a_foreign_handle_is_an_error():
    pool = SlabPool(256 * 1024)
    a = pool.alloc(16)
    b = pool.alloc(16)
    pool.free(a)
    with pytest.raises(SlabError):
        pool.free(a)
    with pytest.raises(SlabError):
        pool.free(b + 1)
    with pytest.raises(SlabError):
        pool.free(4096 * 10)


def test_reset_statistics_zeroes_reqs_and_fails_only():
    pool = SlabPool(32 * 1024)
    for _ in range(15):
        pool.alloc(2000)
    pool.reset_statistics()
    assert pool.slot_stats(2048) == {"used": 14, "free": 0, "reqs": 0, "fails": 0}
    assert pool.pages_used == 7


def test_multi_page_runs_need_contiguous_free_pages():
    pool = SlabPool(32 * 1024)  # 7 pages
    singles = [pool.alloc(4096) for _ in range(7)]
    for h in singles[::2]:
        pool.free(h)  # pages 0, 2, 4, 6 free, none adjacent
    assert pool.pages_free == 4
    assert pool.alloc(8192) is None
    assert pool.alloc(4096) is not None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9000), st.integers(0, 10**6)), max_size=300))
def test_random_alloc_free_keeps_pages_constant_and_used_slots_equal_to_live_allocations(ops):
    pool = SlabPool(128 * 1024)
    total = pool.pages_total
    live: dict[int, int] = {}  # handle -> slot size or 0 for page runs
    for is_alloc, nbytes, pick in ops:
        if is_alloc or not live:
            handle = pool.alloc(nbytes)
            if handle is not None:
                assert handle not in live
                live[handle] = slot_size(nbytes) or 0
        else:
            handle = list(live)[pick % len(live)]
            pool.free(handle)
            del live[handle]
        stats = pool.stats()
        assert stats["pages"]["used"] + stats["pages"]["free"] == total
        for size in SLOT_SIZES:
            slot = stats["slots"][str(size)]
            assert slot["used"] == sum(1 for s in live.values() if s == size)
            assert (slot["used"] + slot["free"]) % slots_per_page(size) == 0
    for handle in list(live):
        pool.free(handle)
    assert pool.pages_used == 0
