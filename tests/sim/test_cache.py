"""The proxy cache zone: statuses, counters, limits, inactive, validity, loader, lock."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.conf.config import CachePathConf, CacheValid, ProxyConf
from sim.core.rng import Streams
from sim.http.cache import (
    KEYS_PER_MIB,
    LOADER_DELAY_MS,
    MIB,
    CacheNode,
    CacheStatus,
    CacheZone,
    LruIndex,
    cache_key,
    evaluate_bypass,
    failure_kind,
    valid_for,
)

HIT, MISS, EXPIRED, STALE = CacheStatus.HIT, CacheStatus.MISS, CacheStatus.EXPIRED, CacheStatus.STALE
UPDATING, REVALIDATED, BYPASS = CacheStatus.UPDATING, CacheStatus.REVALIDATED, CacheStatus.BYPASS


def make_zone(
    env=None,
    *,
    keys_zone_size=10 * MIB,
    max_size=None,
    inactive_ms=600_000,
    block_size=1,
    loader_files=100,
    loader_sleep_ms=50,
):
    env = env if env is not None else simpy.Environment()
    conf = CachePathConf(
        path="/var/cache/nginx",
        name="zone_one",
        keys_zone_size=keys_zone_size,
        inactive_ms=inactive_ms,
        max_size=max_size,
        loader_files=loader_files,
        loader_sleep_ms=loader_sleep_ms,
    )
    return CacheZone(conf, env, block_size=block_size)


def proxy(**kw):
    kw.setdefault("cache_valid", (CacheValid((200,), False, 60_000),))
    return ProxyConf(cache="zone_one", **kw)


def fetch(zone, key, now, p, size=100, valid_ms=60_000, version=None):
    """A request that misses or expires, goes to the backend, stores the answer and releases."""
    lk = zone.lookup(key, now, p)
    if lk.status in (MISS, EXPIRED) and lk.cacheable:
        zone.store(key, 200, size, now, valid_ms, version)
    zone.release(lk)
    return lk


# ---------------------------------------------------------------------------------------------
# statuses


def test_missing_key_is_miss_and_the_stored_response_then_hits():
    zone, p = make_zone(), proxy()
    lk = zone.lookup("k", 0, p)
    assert (lk.status, lk.entry, lk.cacheable) == (MISS, None, True)
    assert zone.store("k", 200, 1234, 0, 60_000, version=3)
    zone.release(lk)
    hit = zone.lookup("k", 10, p)
    assert hit.status == HIT
    assert (hit.entry.status_code, hit.entry.nbytes, hit.entry.version) == (200, 1234, 3)


def test_entry_is_fresh_through_its_validity_then_expired_and_replaced():
    zone, p = make_zone(), proxy()
    fetch(zone, "k", 0, p, size=100, valid_ms=1000, version=1)
    assert zone.lookup("k", 1000, p).status == HIT
    lk = zone.lookup("k", 1001, p)
    assert lk.status == EXPIRED and lk.updater and lk.entry.version == 1
    zone.store("k", 200, 150, 1001, 1000, version=2)
    zone.release(lk)
    again = zone.lookup("k", 1002, p)
    assert again.status == HIT and again.entry.version == 2 and zone.size == 150


def test_requests_during_a_refresh_get_updating_with_use_stale_updating():
    zone = make_zone()
    p = proxy(cache_use_stale=("updating",))
    fetch(zone, "k", 0, p, valid_ms=1000)
    first = zone.lookup("k", 2000, p)
    second = zone.lookup("k", 2001, p)
    assert (first.status, first.updater) == (EXPIRED, True)
    assert (second.status, second.updater) == (UPDATING, False)
    assert second.entry is first.entry
    zone.release(first)
    assert zone.lookup("k", 2002, p).status == EXPIRED  # the mark is gone: a new refresh starts


def test_requests_during_a_refresh_also_go_to_the_backend_without_use_stale_updating():
    zone, p = make_zone(), proxy()
    fetch(zone, "k", 0, p, valid_ms=1000)
    first = zone.lookup("k", 2000, p)
    second = zone.lookup("k", 2001, p)
    assert (first.status, first.updater) == (EXPIRED, True)
    assert (second.status, second.updater, second.cacheable) == (EXPIRED, False, True)


def test_background_update_serves_stale_and_holds_the_refresh():
    zone = make_zone()
    p = proxy(cache_use_stale=("updating",), cache_background_update=True)
    fetch(zone, "k", 0, p, valid_ms=1000)
    lk = zone.lookup("k", 5000, p)
    assert (lk.status, lk.updater) == (STALE, True)
    assert zone.lookup("k", 5001, p).status == UPDATING
    zone.store("k", 200, 100, 5100, 1000)
    zone.release(lk)
    assert zone.lookup("k", 5101, p).status == HIT


def test_stale_entry_is_served_only_for_the_failures_use_stale_lists():
    zone = make_zone()
    p = proxy(cache_use_stale=("error", "http_502"))
    fetch(zone, "k", 0, p, valid_ms=1000)
    timed_out = zone.lookup("k", 2000, p)
    assert not timed_out.serve_stale("timeout")
    assert timed_out.status == EXPIRED
    zone.release(timed_out)
    bad_gateway = zone.lookup("k", 2001, p)
    assert bad_gateway.serve_stale(failure_kind(502))
    assert bad_gateway.status == STALE and bad_gateway.entry is zone.get("k")
    zone.release(bad_gateway)
    missing = zone.lookup("other", 2002, p)
    assert not missing.serve_stale("error") and missing.status == MISS


def test_304_revalidates_an_expired_entry_which_is_fresh_again():
    zone = make_zone()
    p = proxy(cache_revalidate=True)
    fetch(zone, "k", 0, p, valid_ms=1000, version=7)
    lk = zone.lookup("k", 1500, p)
    assert lk.status == EXPIRED and lk.conditional and lk.entry.version == 7
    zone.revalidate(lk, 1600, valid_for(p, lk.entry.status_code))
    assert lk.status == REVALIDATED and not lk.updater
    assert zone.get("k").valid_until == 1600 + 60_000
    assert zone.lookup("k", 1700, p).status == HIT


def test_revalidation_leaves_an_entry_replaced_meanwhile_alone():
    zone = make_zone()
    p = proxy(cache_revalidate=True)
    fetch(zone, "k", 0, p, valid_ms=1000, version=1)
    lk = zone.lookup("k", 1500, p)
    zone.store("k", 200, 100, 1550, 500, version=2)  # another request wrote a new copy
    zone.revalidate(lk, 1600, 60_000)
    assert zone.get("k").version == 2 and zone.get("k").valid_until == 2050


def test_bypassed_response_is_stored_without_lookup_or_min_uses():
    zone = make_zone()
    p = proxy(cache_min_uses=3, cache_bypass=("$cookie_nocache",))
    assert evaluate_bypass(p.cache_bypass, {"cookie_nocache": "1"})
    assert zone.store("k", 200, 500, 0, 60_000)
    zone.count(BYPASS, 500, written=True)
    assert zone.lookup("k", 1, p).status == HIT


def test_min_uses_counts_lookups_before_a_response_may_be_written():
    zone = make_zone()
    p = proxy(cache_min_uses=2)
    first = zone.lookup("k", 0, p)
    assert (first.status, first.cacheable) == (MISS, False)
    zone.release(first)
    assert len(zone) == 1  # the key stays to count its uses
    second = zone.lookup("k", 1, p)
    assert (second.status, second.cacheable) == (MISS, True)
    zone.store("k", 200, 10, 1, 60_000)
    zone.release(second)
    assert zone.lookup("k", 2, p).status == HIT


def test_a_miss_that_is_not_stored_frees_its_key():
    zone, p = make_zone(), proxy()
    lk = zone.lookup("k", 0, p)
    assert len(zone) == 1
    zone.release(lk)
    assert len(zone) == 0


# ---------------------------------------------------------------------------------------------
# counters


def test_counters_follow_each_status_and_written_only_where_the_api_has_it():
    zone = make_zone()
    zone.count(HIT, 100)
    zone.count(HIT, 50)
    zone.count(STALE, 7)
    zone.count(UPDATING, 8)
    zone.count(REVALIDATED, 9)
    zone.count(MISS, 300, written=True)
    zone.count(MISS, 30)
    zone.count(EXPIRED, 40, written=True)
    zone.count(BYPASS, 60)
    assert zone.stats == {
        "hit": {"responses": 2, "bytes": 150},
        "stale": {"responses": 1, "bytes": 7},
        "updating": {"responses": 1, "bytes": 8},
        "revalidated": {"responses": 1, "bytes": 9},
        "miss": {"responses": 2, "bytes": 330, "responses_written": 1, "bytes_written": 300},
        "expired": {"responses": 1, "bytes": 40, "responses_written": 1, "bytes_written": 40},
        "bypass": {"responses": 1, "bytes": 60, "responses_written": 0, "bytes_written": 0},
    }
    assert list(zone.stats) == ["hit", "stale", "updating", "revalidated", "miss", "expired", "bypass"]
    with pytest.raises(KeyError):
        zone.count(HIT, 1, written=True)


def test_reset_statistics_zeroes_counters_but_keeps_size_max_size_and_cold():
    zone = make_zone(max_size=10_000)
    fetch(zone, "k", 0, proxy(), size=700)
    zone.count(MISS, 700, written=True)
    zone.reset_statistics()
    assert zone.stats["miss"] == {"responses": 0, "bytes": 0, "responses_written": 0, "bytes_written": 0}
    assert (zone.size, zone.max_size, zone.cold) == (700, 10_000, True)


# ---------------------------------------------------------------------------------------------
# max_size and blocks


def test_eviction_removes_least_recently_used_entries_until_size_is_below_max_size():
    zone, p = make_zone(max_size=1000), proxy()
    for t, key in enumerate("abc"):
        fetch(zone, key, t, p, size=300)
    assert zone.lookup("a", 3, p).status == HIT  # a is now the most recently used
    fetch(zone, "d", 4, p, size=300)
    assert [k for k, _ in zone.entries()] == ["c", "a", "d"] and zone.size == 900
    fetch(zone, "e", 5, p, size=100)  # 1000 is not below max_size: c goes too
    assert [k for k, _ in zone.entries()] == ["a", "d", "e"] and zone.size == 700


def test_an_entry_as_large_as_max_size_empties_the_cache_including_itself():
    zone, p = make_zone(max_size=1000), proxy()
    fetch(zone, "a", 0, p, size=200)
    assert zone.store("big", 200, 1000, 1, 60_000)  # written, as nginx writes it before the manager runs
    assert zone.entries() == [] and zone.size == 0


def test_an_entry_being_refreshed_is_not_evicted():
    zone, p = make_zone(max_size=1000), proxy()
    fetch(zone, "a", 0, p, size=400, valid_ms=10)
    fetch(zone, "b", 1, p, size=400)
    refresh = zone.lookup("a", 100, p)  # a is expired and now being updated (in use)
    assert refresh.updater
    zone.lookup("b", 101, p)  # make b more recent than a
    fetch(zone, "c", 102, p, size=400)
    # a was least recent but in use: moved to the recent end, and b went instead
    assert [k for k, _ in zone.entries()] == ["c", "a"]


def test_sizes_are_counted_in_whole_file_system_blocks():
    zone, p = make_zone(max_size=100_000, block_size=4096), proxy()
    fetch(zone, "a", 0, p, size=1)
    fetch(zone, "b", 0, p, size=4097)
    assert zone.size == 3 * 4096
    assert zone.get("b").nbytes == 4097 and zone.get("b").size == 8192
    assert zone.max_size == 24 * 4096  # 100000 rounded down to blocks


def test_max_size_is_none_when_unlimited():
    assert make_zone().max_size is None


# ---------------------------------------------------------------------------------------------
# keys zone


def test_keys_zone_holds_4000_keys_per_megabyte():
    assert KEYS_PER_MIB == 4000
    assert make_zone(keys_zone_size=MIB).keys_capacity == 4000
    assert make_zone(keys_zone_size=10 * MIB).keys_capacity == 40_000
    assert make_zone(keys_zone_size=8192).keys_capacity == 31


def test_full_keys_zone_drops_the_oldest_keys_then_stays_under_the_watermark():
    zone, p = make_zone(keys_zone_size=4195), proxy()  # room for 16 keys
    assert zone.keys_capacity == 16
    for i in range(16):
        fetch(zone, f"k{i}", i, p)
    assert len(zone) == 16
    fetch(zone, "k16", 16, p)  # full: one old key goes, and the count is kept below 16 - 16 // 8
    assert [k for k, _ in zone.entries()] == [f"k{i}" for i in range(4, 17)]
    fetch(zone, "k17", 17, p)
    assert len(zone) == 13 and zone.get("k4") is None and zone.get("k17") is not None


# ---------------------------------------------------------------------------------------------
# inactive


def test_unused_entry_is_removed_exactly_inactive_after_its_last_use():
    env = simpy.Environment()
    zone, p = make_zone(env, inactive_ms=10_000), proxy()
    fetch(zone, "a", 0, p)
    fetch(zone, "b", 0, p)
    env.run(until=4000)
    assert zone.lookup("a", env.now, p).status == HIT  # a's deadline moves to 14000
    env.run(until=10_000)  # run(until=t) stops before the events due at t
    assert zone.get("b") is not None
    env.run(until=10_000.001)
    assert zone.get("b") is None and zone.get("a") is not None and zone.size == 100
    env.run(until=14_000)
    assert zone.get("a") is not None
    env.run(until=14_000.001)
    assert len(zone) == 0 and zone.size == 0


def test_a_lookup_at_the_inactive_deadline_finds_the_entry_gone():
    zone, p = make_zone(inactive_ms=10_000), proxy()
    fetch(zone, "a", 0, p)
    assert zone.lookup("a", 9_999, p).status == HIT  # deadline now 19_999
    assert zone.lookup("a", 19_998, p).status == HIT  # deadline now 29_998
    assert zone.lookup("a", 29_998, p).status == MISS


def test_purge_inactive_removes_only_what_is_past_its_deadline():
    zone, p = make_zone(inactive_ms=1000), proxy()
    fetch(zone, "a", 0, p)
    fetch(zone, "b", 500, p)
    assert zone.purge_inactive(999) == 0
    assert zone.purge_inactive(1000) == 1 and zone.get("b") is not None


# ---------------------------------------------------------------------------------------------
# validity


def test_proxy_cache_valid_with_a_time_only_covers_200_301_302():
    p = proxy(cache_valid=(CacheValid((), False, 5000),))
    assert [valid_for(p, s) for s in (200, 301, 302, 404, 500)] == [5000, 5000, 5000, None, None]


def test_first_matching_proxy_cache_valid_wins_and_any_matches_every_status():
    p = proxy(
        cache_valid=(
            CacheValid((200, 302), False, 600_000),
            CacheValid((404,), False, 60_000),
            CacheValid((), True, 1000),
            CacheValid((500,), False, 99_000),
        )
    )
    assert [valid_for(p, s) for s in (200, 302, 404, 500, 503)] == [600_000, 600_000, 60_000, 1000, 1000]


def test_zero_time_or_no_matching_proxy_cache_valid_is_not_cacheable():
    p = proxy(cache_valid=(CacheValid((404,), False, 0),))
    assert valid_for(p, 404) is None and valid_for(p, 200) is None
    assert valid_for(proxy(cache_valid=()), 200) is None


def test_response_headers_take_precedence_over_proxy_cache_valid():
    p = proxy()  # 200 for 60 s
    assert valid_for(p, 200, 5000) == 5000  # Cache-Control: max-age=5
    assert valid_for(p, 404, 5000) == 5000  # any status the headers make cacheable
    assert valid_for(p, 200, 0) is None  # max-age=0
    assert valid_for(p, 200, 5000, x_accel_expires_ms=9000) == 9000
    assert valid_for(p, 200, no_store=True, x_accel_expires_ms=9000) == 9000
    assert valid_for(p, 200, x_accel_expires_ms=0) is None
    assert valid_for(p, 200, no_store=True) is None
    assert valid_for(p, 200, expires_in_ms=3000) == 3000
    assert valid_for(p, 200, 7000, expires_in_ms=3000) == 7000
    assert valid_for(p, 200, expires_in_ms=-1) is None


def test_set_cookie_or_vary_star_is_never_cached():
    p = proxy()
    assert valid_for(p, 200, set_cookie=True) is None
    assert valid_for(p, 200, 5000, vary_star=True) is None
    assert valid_for(p, 200, x_accel_expires_ms=5000, set_cookie=True) is None


def test_store_without_validity_writes_nothing():
    zone = make_zone()
    assert not zone.store("k", 200, 10, 0, None)
    assert len(zone) == 0


# ---------------------------------------------------------------------------------------------
# loader, restart, reload


def test_zone_is_cold_until_the_loader_has_run_a_minute_after_start():
    env = simpy.Environment()
    zone = make_zone(env)
    env.run(until=LOADER_DELAY_MS - 1)
    assert zone.cold
    env.run(until=LOADER_DELAY_MS + 0.5)
    assert not zone.cold


def test_after_a_restart_the_loader_walks_disk_entries_in_batches():
    env = simpy.Environment()
    zone, p = make_zone(env, loader_files=100, loader_sleep_ms=50), proxy()
    for i in range(250):
        fetch(zone, f"k{i}", 0, p, size=10)
    zone.count(MISS, 10, written=True)
    env.run(until=1000)
    zone.restart()
    assert (zone.size, len(zone), zone.cold, zone.stats["miss"]["responses"]) == (0, 0, True, 0)
    sizes = {}
    for t in (60_999, 61_000.5, 61_050.5, 61_100.5):
        env.run(until=t)
        sizes[t] = (zone.size, zone.cold)
    assert sizes == {
        60_999: (0, True),
        61_000.5: (1000, True),
        61_050.5: (2000, True),
        61_100.5: (2500, False),
    }


def test_a_request_during_cold_finds_the_entry_left_on_disk():
    env = simpy.Environment()
    zone, p = make_zone(env), proxy()
    fetch(zone, "k", 0, p, size=300, version=4)
    zone.restart()
    lk = zone.lookup("k", 1, p)
    assert lk.status == HIT and lk.entry.version == 4
    assert zone.size == 300 and zone.cold
    env.run(until=LOADER_DELAY_MS + 1)
    assert zone.size == 300 and not zone.cold


def test_reload_keeps_entries_and_a_loader_not_yet_started_waits_a_minute_from_the_reload():
    env = simpy.Environment()
    zone, p = make_zone(env, max_size=10_000), proxy()
    fetch(zone, "a", 0, p, size=600)
    fetch(zone, "b", 0, p, size=600)
    env.run(until=30_000)
    smaller = CachePathConf(path="/var/cache/nginx", name="zone_one", keys_zone_size=10 * MIB, max_size=1000)
    zone.reload(smaller)
    assert [k for k, _ in zone.entries()] == ["b"] and zone.max_size == 1000
    env.run(until=LOADER_DELAY_MS + 1)
    assert zone.cold
    env.run(until=30_000 + LOADER_DELAY_MS + 1)
    assert not zone.cold


def test_reload_of_a_warm_zone_does_not_make_it_cold():
    env = simpy.Environment()
    zone = make_zone(env)
    env.run(until=LOADER_DELAY_MS + 1)
    zone.reload(zone.conf)
    assert not zone.cold


# ---------------------------------------------------------------------------------------------
# proxy_cache_lock


def _client(env, zone, p, key, at, log, *, fill_after=None, fail_after=None):
    """A request at ``at``: waits on the lock as needed; an updater fills or fails after a delay."""
    yield env.timeout(at)
    lk = zone.lookup(key, env.now, p)
    while lk.wait is not None:
        why = yield lk.wait
        log.append((key, "woke", why, env.now))
        lk = zone.lookup(key, env.now, p, retry=lk)
    log.append((key, lk.status, lk.updater, lk.cacheable, env.now))
    if lk.updater and fill_after is not None:
        yield env.timeout(fill_after)
        zone.store(key, 200, 100, env.now, 60_000)
    elif lk.updater and fail_after is not None:
        yield env.timeout(fail_after)
    else:
        return
    zone.release(lk)


def test_lock_waiters_are_released_at_their_next_poll_after_the_fill():
    env = simpy.Environment()
    zone, p = make_zone(env), proxy(cache_lock=True)
    log = []
    env.process(_client(env, zone, p, "k", 0, log, fill_after=120))
    env.process(_client(env, zone, p, "k", 10, log, fill_after=120))
    env.process(_client(env, zone, p, "k", 700, log, fill_after=120))
    env.run(until=2000)
    assert log == [
        ("k", MISS, True, True, 0),
        ("k", "woke", "retry", 510),
        ("k", HIT, False, True, 510),
        ("k", HIT, False, True, 700),
    ]


def test_a_failed_fill_lets_a_waiter_take_the_lock():
    env = simpy.Environment()
    zone, p = make_zone(env), proxy(cache_lock=True)
    log = []
    env.process(_client(env, zone, p, "k", 0, log, fail_after=100))
    env.process(_client(env, zone, p, "k", 50, log, fill_after=100))
    env.run(until=2000)
    assert log == [
        ("k", MISS, True, True, 0),
        ("k", "woke", "retry", 550),
        ("k", MISS, True, True, 550),
    ]
    assert zone.get("k") is not None


def test_lock_wait_times_out_at_a_poll_and_the_request_goes_uncached():
    env = simpy.Environment()
    zone, p = make_zone(env), proxy(cache_lock=True, cache_lock_timeout_ms=1200, cache_lock_age_ms=5000)
    log = []
    env.process(_client(env, zone, p, "k", 0, log, fill_after=10_000))
    env.process(_client(env, zone, p, "k", 0, log))
    env.run(until=3000)
    assert log == [
        ("k", MISS, True, True, 0),
        ("k", "woke", "timeout", 1500),  # 1200 ms is noticed at the third 500 ms poll
        ("k", MISS, False, False, 1500),
    ]


def test_after_lock_age_another_request_may_fetch():
    env = simpy.Environment()
    zone, p = make_zone(env), proxy(cache_lock=True, cache_lock_timeout_ms=5000, cache_lock_age_ms=800)
    log = []
    env.process(_client(env, zone, p, "k", 0, log, fill_after=10_000))
    env.process(_client(env, zone, p, "k", 100, log, fill_after=10_000))
    env.run(until=3000)
    assert log == [
        ("k", MISS, True, True, 0),
        ("k", "woke", "retry", 800),  # polls at 600, then at the lock's age
        ("k", MISS, True, True, 800),
    ]


# ---------------------------------------------------------------------------------------------
# keys and predicates


def test_cache_key_substitutes_variables_from_the_request():
    vars_ = {"scheme": "http", "proxy_host": "backend", "request_uri": "/a?b=1", "host": "x.org"}
    assert cache_key("$scheme$proxy_host$request_uri", vars_) == "httpbackend/a?b=1"
    assert cache_key("${host}:$request_uri|$missing", vars_) == "x.org:/a?b=1|"
    assert cache_key("static", vars_) == "static"


def test_bypass_is_true_when_any_value_is_neither_empty_nor_zero():
    values = ("$cookie_nocache", "$arg_nocache$arg_comment")
    assert not evaluate_bypass(values, {})
    assert not evaluate_bypass(values, {"cookie_nocache": "0"})
    assert evaluate_bypass(values, {"cookie_nocache": "yes"})
    assert evaluate_bypass(values, {"arg_nocache": "0", "arg_comment": "0"})  # "00" is not "0"
    assert evaluate_bypass(("$http_pragma",), {"http_pragma": "no-cache"})
    assert not evaluate_bypass((), {"http_pragma": "no-cache"})


# ---------------------------------------------------------------------------------------------
# Zipf workload against an independent LRU


def _zipf_sequence(n_requests=30_000, n_keys=1000, seed=7):
    rng = Streams(seed).get("test/cache/zipf")
    weights = 1.0 / np.arange(1, n_keys + 1)
    keys = rng.choice(n_keys, size=n_requests, p=weights / weights.sum())
    sizes = rng.integers(1024, 8193, size=n_keys)
    return keys.tolist(), sizes.tolist()


def _reference_lru_hit_ratio(keys, sizes, max_size):
    lru: OrderedDict[int, int] = OrderedDict()
    size = hits = 0
    for k in keys:
        if k in lru:
            hits += 1
            lru.move_to_end(k)
            continue
        lru[k] = sizes[k]
        size += sizes[k]
        while lru and size >= max_size:
            size -= lru.popitem(last=False)[1]
    return hits / len(keys)


def _zone_hit_ratio(keys, sizes, max_size):
    zone, p = make_zone(max_size=max_size), proxy()
    hits = 0
    for t, k in enumerate(keys):
        key = f"/item/{k}"
        lk = zone.lookup(key, t, p)
        if lk.status == HIT:
            hits += 1
            zone.count(HIT, lk.entry.nbytes)
            continue
        written = zone.store(key, 200, sizes[k], t, 3_600_000)
        zone.release(lk)
        zone.count(MISS, sizes[k], written=written)
        assert zone.size < max_size
    assert zone.stats["hit"]["responses"] == hits
    return hits / len(keys)


def test_zipf_hit_ratio_rises_with_max_size_and_matches_an_independent_lru():
    keys, sizes = _zipf_sequence()
    ratios = []
    for max_size in (128 * 1024, 512 * 1024, 1024 * 1024, 2 * 1024 * 1024):
        model = _zone_hit_ratio(keys, sizes, max_size)
        reference = _reference_lru_hit_ratio(keys, sizes, max_size)
        assert abs(model - reference) <= 0.005
        ratios.append(model)
    assert ratios == sorted(ratios) and len(set(ratios)) == len(ratios)
    assert ratios[0] > 0.2 and ratios[-1] < 0.95


# ---------------------------------------------------------------------------------------------
# invariants

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["fetch", "fetch", "fetch", "hold", "finish", "advance", "restart"]),
        st.integers(0, 24),
        st.integers(1, 6000),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=_OPS, block_size=st.sampled_from([1, 512]), lock=st.booleans())
def test_random_operations_keep_size_equal_to_entries_and_below_max_size(ops, block_size, lock):
    env = simpy.Environment()
    max_size = 20_000
    zone = make_zone(env, keys_zone_size=4195, max_size=max_size, inactive_ms=3000, block_size=block_size)
    p = proxy(cache_lock=lock, cache_use_stale=("updating",), cache_min_uses=1)
    held = []
    for op, k, n in ops:
        key = f"k{k}"
        if op == "fetch":
            lk = zone.lookup(key, env.now, p)
            if lk.status in (MISS, EXPIRED) and lk.cacheable and lk.wait is None:
                zone.store(key, 200, n, env.now, 1000)
            zone.release(lk)
        elif op == "hold":
            held.append(zone.lookup(key, env.now, p))
        elif op == "finish" and held:
            lk = held.pop(0)
            if lk.updater:
                zone.store(lk.key, 200, n, env.now, 1000)
            zone.release(lk)
        elif op == "advance":
            env.run(until=env.now + n * (10 if k > 20 else 1))
        elif op == "restart":
            zone.restart()
        stored = [e for _, e in zone.entries()]
        assert zone.size == sum(e.size for e in stored)
        assert all(e.size % block_size == 0 and e.size >= e.nbytes for e in stored)
        assert zone.size < max_size
        assert len(zone) <= zone.keys_capacity


def test_lock_waiters_wake_after_a_restart_drops_the_holder():
    env = simpy.Environment()
    zone, p = make_zone(env), proxy(cache_lock=True)
    log = []
    env.process(_client(env, zone, p, "k", 0, log, fill_after=10_000))
    env.process(_client(env, zone, p, "k", 100, log, fill_after=10_000))
    env.run(until=200)
    zone.restart()
    env.run(until=1000)
    assert log[1:] == [("k", "woke", "retry", 600), ("k", MISS, True, True, 600)]


def _keys_zone_view(zone):
    return [(n.key, n.uses, n.expire, n.updating, n.entry) for n in zone._nodes.in_order()]


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1500), st.integers(0, 2000), st.booleans()),
                    max_size=60))
def test_hit_shortcut_leaves_the_zone_as_a_lookup_that_hits_would(ops):
    env_a, env_b = simpy.Environment(), simpy.Environment()
    a = make_zone(env_a, max_size=2000, inactive_ms=1000)
    b = make_zone(env_b, max_size=2000, inactive_ms=1000)
    p = proxy(cache_use_stale=("updating",))
    now = 0
    for k, dt, valid_ms, run_timers in ops:
        key = f"k{k}"
        now += dt
        if run_timers:  # otherwise the request comes before the inactive timer at its deadline
            env_a.run(until=now + 1)
            env_b.run(until=now + 1)
            now += 1
        served = []
        for zone, shortcut in ((a, False), (b, True)):
            entry = zone.hit(key, now) if shortcut else None
            if entry is None:
                lk = zone.lookup(key, now, p)
                if lk.status == HIT:
                    entry = lk.entry
                    zone.count(HIT, entry.nbytes)
                elif lk.cacheable:
                    zone.store(key, 200, 300, now, valid_ms)
                zone.release(lk)
            served.append(entry)
        assert (served[0] is None) == (served[1] is None)
        assert a.stats == b.stats and a.size == b.size
        assert [v[:4] for v in _keys_zone_view(a)] == [v[:4] for v in _keys_zone_view(b)]


def test_hit_shortcut_touches_nothing_for_a_missing_or_expired_key():
    zone, p = make_zone(), proxy()
    fetch(zone, "k", 0, p, valid_ms=100)
    before = (_keys_zone_view(zone), zone.stats)
    assert zone.hit("absent", 50) is None
    assert zone.hit("k", 101) is None
    assert (_keys_zone_view(zone), zone.stats) == before
    entry = zone.hit("k", 100)
    assert entry is not None and entry.nbytes == 100
    assert zone.stats["hit"] == {"responses": 1, "bytes": 100}


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "remove", "touch"]), st.integers(0, 7)), max_size=80))
def test_lru_index_keeps_the_order_an_ordered_dict_keeps(ops):
    index, model = LruIndex(), OrderedDict()
    for op, k in ops:
        key = f"k{k}"
        node = index.get(key)
        assert (node is None) == (key not in model)
        if op == "add" and node is None:
            node = CacheNode(key, 0.0)
            index.add(node)
            model[key] = node
        elif op == "remove" and node is not None:
            index.remove(node)
            del model[key]
            assert not node.indexed and node.older is None and node.newer is None
        elif op == "touch" and node is not None:
            index.touch(node)
            model.move_to_end(key)
        assert [n.key for n in index.in_order()] == list(model)
        assert len(index) == len(model)
        assert index.first() is (next(iter(model.values())) if model else None)
        assert all(n.indexed for n in model.values())


def test_a_kept_node_serves_hits_while_indexed_and_says_when_it_is_gone():
    env = simpy.Environment()
    zone, p = make_zone(env, inactive_ms=10_000), proxy()
    fetch(zone, "a", 0, p)
    node = zone.node_of("a")
    assert node is not None and node.indexed
    assert zone.hit_node(node, 5) is zone.get("a")
    assert zone.stats["hit"]["responses"] == 1
    env.run(until=20_000)  # inactive: the node leaves the keys zone
    assert not node.indexed and zone.node_of("a") is None
    fetch(zone, "a", 20_000, p)
    again = zone.node_of("a")
    assert again is not node and again.indexed
    zone.restart()
    assert not again.indexed and len(zone) == 0
