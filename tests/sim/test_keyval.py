"""Keyval zones: the API's rules, lookups by type, expiry, memory, zone_sync hooks, state file."""

from __future__ import annotations

import json

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.conf.config import KeyvalZoneConf
from sim.core.clock import DEFAULT_EPOCH_MS, NodeClock
from sim.zones.keyval import (
    KeyvalFormatError,
    KeyvalKeyExists,
    KeyvalKeyNotFound,
    KeyvalStateError,
    KeyvalZone,
    KeyvalZoneFull,
    SlotStats,
    allocation_cost,
    coerce_value,
)

ONE_PAGE = 8192  # after the pool header and page alignment, one page is left to allocate from


def make_zone(env=None, *, node="node1", offset_ms=0.0, state_dir=None, write_through=True, **conf):
    env = env or simpy.Environment()
    settings_ = {"name": "one", "kind": "http", "size": 32768}
    settings_.update(conf)
    clock = NodeClock(env, offset_ms=offset_ms)
    return KeyvalZone(
        KeyvalZoneConf(**settings_), env, clock, node, state_dir=state_dir, write_through=write_through
    )


def run_to(zone, t):
    zone.env.run(until=t)


# ---------------------------------------------------------------------------------------------
# POST / PATCH / DELETE / GET


def test_post_adds_one_pair_and_get_returns_it():
    zone = make_zone()
    zone.post({"a": "1"})
    assert zone.get() == {"a": "1"}
    assert zone.get("a") == {"a": "1"}
    assert zone.records_total == 1


def test_post_of_several_pairs_is_allowed_into_an_empty_zone():
    zone = make_zone()
    zone.post({"a": "1", "b": "2", "c": "3"})
    assert zone.get() == {"a": "1", "b": "2", "c": "3"}


def test_post_of_several_pairs_into_a_non_empty_zone_is_refused_and_adds_nothing():
    zone = make_zone()
    zone.post({"a": "1"})
    with pytest.raises(KeyvalFormatError) as err:
        zone.post({"b": "2", "c": "3"})
    assert err.value.text == "only one key can be added"
    assert err.value.code == "KeyvalFormatError"
    assert zone.get() == {"a": "1"}


def test_post_of_an_existing_key_raises_key_exists_with_nginx_wording():
    zone = make_zone()
    zone.post({"a": "1"})
    with pytest.raises(KeyvalKeyExists) as err:
        zone.post({"a": "2"})
    assert err.value.text == 'key "a" already exists'
    assert zone.get() == {"a": "1"}


@pytest.mark.parametrize("body", [{}, [], "a", None])
def test_post_of_an_empty_or_non_object_body_is_key_required(body):
    zone = make_zone()
    with pytest.raises(KeyvalFormatError, match="^key required$"):
        zone.post(body)


def test_post_of_a_numeric_value_stores_its_text():
    zone = make_zone()
    zone.post({"a": 1, "b": 2.5}, objects_allowed=False)
    assert zone.get() == {"a": "1", "b": "2.5"}


def test_post_of_an_object_value_before_api_5_is_nested_object_or_list():
    zone = make_zone(timeout_ms=1000)
    with pytest.raises(KeyvalFormatError, match="^nested object or list$"):
        zone.post({"a": {"value": "1", "expire": 10}}, objects_allowed=False)
    with pytest.raises(KeyvalFormatError, match="^nested object or list$"):
        zone.post({"a": ["1"]}, objects_allowed=False)


def test_post_with_expire_needs_the_zone_timeout():
    zone = make_zone()
    with pytest.raises(KeyvalFormatError, match="^keyval timeout is not enabled$"):
        zone.post({"a": {"value": "1", "expire": 500}})
    assert zone.get() == {}


def test_post_of_an_object_value_without_expire_works_without_timeout():
    zone = make_zone()
    zone.post({"a": {"value": "1"}})
    assert zone.record("a").expire_at is None


@pytest.mark.parametrize(
    "value",
    [{"expire": 10}, {"value": "1", "ttl": 3}, {"value": {"x": 1}}, {"value": "1", "expire": -1}, True],
)
def test_post_of_a_malformed_object_value_is_invalid_json(value):
    zone = make_zone(timeout_ms=1000)
    with pytest.raises(KeyvalFormatError, match="^invalid JSON$"):
        zone.post({"a": value})


def test_post_of_a_null_value_is_invalid_json():
    zone = make_zone()
    with pytest.raises(KeyvalFormatError, match="^invalid JSON$"):
        zone.post({"a": None})


def test_post_of_an_empty_key_is_invalid_key_format():
    zone = make_zone()
    with pytest.raises(KeyvalFormatError, match="^invalid key format$"):
        zone.post({"": "1"})


def test_post_into_an_ip_zone_needs_an_address_or_network_key():
    zone = make_zone(type="ip")
    with pytest.raises(KeyvalFormatError, match="^invalid key format$"):
        zone.post({"10.0.0.300": "x"})
    zone.post({"10.0.0.0/8": "x"})
    assert zone.get() == {"10.0.0.0/8": "x"}


def test_patch_changes_the_value_of_one_key():
    zone = make_zone()
    zone.post({"a": "1"})
    zone.patch({"a": "2"})
    assert zone.get() == {"a": "2"}


def test_patch_of_a_number_stores_its_text():
    zone = make_zone()
    zone.post({"a": "1"})
    zone.patch({"a": 42})
    assert zone.get("a") == {"a": "42"}


def test_patch_with_null_deletes_the_key():
    zone = make_zone()
    zone.post({"a": "1", "b": "2"})
    zone.patch({"a": None})
    assert zone.get() == {"b": "2"}
    assert zone.used_bytes == 128


def test_patch_of_an_unknown_key_raises_key_not_found():
    zone = make_zone()
    with pytest.raises(KeyvalKeyNotFound) as err:
        zone.patch({"zz": "1"})
    assert err.value.key == "zz"
    with pytest.raises(KeyvalKeyNotFound):
        zone.patch({"zz": None})


def test_patch_of_several_keys_is_only_one_key_can_be_updated():
    zone = make_zone()
    zone.post({"a": "1", "b": "2"})
    with pytest.raises(KeyvalFormatError, match="^only one key can be updated$"):
        zone.patch({"a": "3", "b": "4"})
    with pytest.raises(KeyvalFormatError, match="^key required$"):
        zone.patch({})
    assert zone.get() == {"a": "1", "b": "2"}


def test_patch_with_expire_only_keeps_the_value_and_moves_the_expiry():
    zone = make_zone(timeout_ms=10_000)
    zone.post({"a": "1"})
    zone.patch({"a": {"expire": 300}})
    assert zone.record("a").value == "1"
    assert zone.record("a").expire_at == 300


def test_patch_with_expire_needs_the_zone_timeout():
    zone = make_zone()
    zone.post({"a": "1"})
    with pytest.raises(KeyvalFormatError, match="^keyval timeout is not enabled$"):
        zone.patch({"a": {"value": "2", "expire": 5}})
    assert zone.get() == {"a": "1"}


def test_delete_all_empties_the_zone_and_frees_its_memory():
    zone = make_zone()
    zone.post({"a": "1", "b": "2"})
    zone.delete_all()
    assert zone.get() == {}
    assert zone.records_total == 0
    assert zone.used_bytes == 0
    assert zone.pages_used == 0


def test_get_of_a_missing_key_raises_key_not_found():
    zone = make_zone()
    zone.post({"a": "1"})
    with pytest.raises(KeyvalKeyNotFound):
        zone.get("b")


def test_assign_inserts_or_replaces_a_pair():
    zone = make_zone()
    zone.assign("a", "1")
    zone.assign("a", "2")
    assert zone.get() == {"a": "2"}


def test_coerce_value_normalises_numbers_objects_and_null():
    assert coerce_value(7) == "7"
    assert coerce_value(7.0) == "7"
    assert coerce_value(0.25) == "0.25"
    assert coerce_value("x") == "x"
    assert coerce_value(None) is None
    assert coerce_value({"value": 3, "expire": 1500}) == {"value": "3", "expire": 1500}
    with pytest.raises(KeyvalFormatError, match="^invalid JSON$"):
        coerce_value({"value": "x", "expire": 1.5})
    with pytest.raises(KeyvalFormatError, match="^invalid JSON$"):
        coerce_value([1])


# ---------------------------------------------------------------------------------------------
# Lookups by type


def test_string_lookup_is_an_exact_match():
    zone = make_zone()
    zone.post({"abc": "1"})
    assert zone.lookup("abc") == "1"
    assert zone.lookup("ab") is None
    assert zone.lookup("abcd") is None


def test_ip_lookup_returns_the_most_specific_network_containing_the_address():
    zone = make_zone(type="ip")
    zone.post({"10.0.0.0/8": "wide", "10.1.0.0/16": "narrow", "10.1.2.3": "host", "2001:db8::/32": "v6"})
    assert zone.lookup("10.1.2.3") == "host"
    assert zone.lookup("10.1.9.9") == "narrow"
    assert zone.lookup("10.200.0.1") == "wide"
    assert zone.lookup("11.0.0.1") is None
    assert zone.lookup("2001:db8::1") == "v6"
    assert zone.lookup("2001:db9::1") is None
    assert zone.lookup("not-an-ip") is None


def test_ip_lookup_falls_back_to_the_wider_network_when_the_narrow_one_is_deleted():
    zone = make_zone(type="ip")
    zone.post({"10.0.0.0/8": "wide", "10.1.0.0/16": "narrow"})
    zone.patch({"10.1.0.0/16": None})
    assert zone.lookup("10.1.2.3") == "wide"


def test_ip_lookup_with_a_default_route_matches_every_address_of_its_family():
    zone = make_zone(type="ip")
    zone.post({"0.0.0.0/0": "any4"})
    assert zone.lookup("203.0.113.9") == "any4"
    assert zone.lookup("::1") is None


def test_prefix_lookup_returns_the_longest_key_that_starts_the_search_key():
    zone = make_zone(type="prefix")
    zone.post({"/api": "short", "/api/v1": "long"})
    assert zone.lookup("/api/v1/users") == "long"
    assert zone.lookup("/api/v2") == "short"
    assert zone.lookup("/apix") == "short"
    assert zone.lookup("/ap") is None
    zone.patch({"/api/v1": None})
    assert zone.lookup("/api/v1/users") == "short"


# ---------------------------------------------------------------------------------------------
# Expiry


def test_pair_is_visible_until_its_timeout_and_gone_at_the_exact_instant():
    zone = make_zone(timeout_ms=1000)
    zone.post({"a": "1"})
    run_to(zone, 999.5)
    assert zone.get() == {"a": "1"}
    run_to(zone, 1000)
    assert zone.get() == {}
    assert zone.lookup("a") is None


def test_an_expired_pair_holds_its_memory_until_the_zone_is_next_written():
    zone = make_zone(timeout_ms=1000)
    zone.post({"a": "1"})
    run_to(zone, 5000)
    # reads never see it, and free nothing: the memory and records_total still hold it
    assert zone.get() == {} and zone.lookup("a") is None and zone.record("a") is None
    assert zone.snapshot() == []
    assert zone.used_bytes == 128 and zone.records_total == 1
    zone.post({"b": "2"})  # a write sweeps the due pair out first
    assert zone.records_total == 1 and zone.used_bytes == 128
    assert zone.get() == {"b": "2"}


def test_expire_in_the_body_overrides_the_zone_timeout():
    zone = make_zone(timeout_ms=60_000)
    zone.post({"a": {"value": "1", "expire": 250}})
    zone.env.run(until=100)
    zone.post({"b": "2"})
    run_to(zone, 250)
    assert zone.get() == {"b": "2"}
    assert zone.record("b").expire_at == 60_100


def test_patch_refreshes_the_expiry_from_the_write_time():
    zone = make_zone(timeout_ms=1000)
    zone.post({"a": "1"})
    run_to(zone, 600)
    zone.patch({"a": "2"})
    run_to(zone, 1500)
    assert zone.get() == {"a": "2"}
    run_to(zone, 1600)
    assert zone.get() == {}


def test_freeing_skips_overwritten_and_deleted_pairs_and_still_expires_the_rest():
    zone = make_zone(timeout_ms=1000)
    zone.post({"a": "1"})
    zone.post({"b": {"value": "2", "expire": 100}})
    zone.post({"c": {"value": "3", "expire": 200}})
    zone.patch({"b": {"value": "2", "expire": 5000}})
    zone.patch({"c": None})
    run_to(zone, 1000.5)
    assert zone.get() == {"b": "2"}
    zone.patch({"b": {"value": "2", "expire": 4000}})  # a write: "a" is freed
    assert zone.used_bytes == 128
    run_to(zone, 5000.5)
    assert zone.get() == {}
    zone.post({"d": "4"})
    assert zone.used_bytes == 128 and zone.records_total == 1


def test_pairs_without_timeout_never_expire():
    zone = make_zone()
    zone.post({"a": "1"})
    run_to(zone, 10**9)
    assert zone.get() == {"a": "1"}


# ---------------------------------------------------------------------------------------------
# Memory


def test_allocation_cost_rounds_to_a_slot_or_to_whole_pages():
    assert [allocation_cost(n) for n in (1, 8, 9, 82, 2048, 2049, 4097)] == [8, 8, 16, 128, 2048, 4096, 8192]


def test_zone_pages_come_from_the_slab_pool_of_the_zone_size():
    assert make_zone(size=32768).pages_total == 7
    assert make_zone(size=ONE_PAGE).pages_total == 1


def test_a_pair_larger_than_half_a_page_takes_whole_pages():
    zone = make_zone()
    zone.post({"big": "x" * 5000})  # 80 + 3 + 5000 bytes -> two pages
    assert zone.slab_allocations() == [8192]
    assert zone.pages_used == 2
    zone.patch({"big": None})
    assert zone.pages_used == 0


def test_each_pair_costs_its_slot_and_ip_zones_add_an_index_node():
    zone = make_zone()
    zone.post({"a": "1", "k" * 60: "v"})  # 82 -> 128, 141 -> 256
    assert zone.slab_allocations() == [128, 256]
    assert zone.used_bytes == 384
    assert zone.pages_used == 2
    ipzone = make_zone(type="ip")
    ipzone.post({"10.0.0.1": "x"})  # 80 + 8 + 1 = 89 -> 128, index 48 -> 64
    assert ipzone.slab_allocations() == [64, 128]


def test_slot_usage_reports_used_free_reqs_and_fails():
    zone = make_zone()
    zone.post({"a": "1", "b": "2"})
    assert zone.slot_usage()[128] == SlotStats(used=2, free=30, reqs=2, fails=0)
    assert zone.slot_usage()[64] == SlotStats(used=0, free=0, reqs=0, fails=0)
    zone.reset_slab_stats()
    assert zone.slot_usage()[128].reqs == 0


def test_full_zone_refuses_a_new_key_but_accepts_an_update_within_its_slot():
    zone = make_zone(size=ONE_PAGE)
    zone.post({f"k{i:02d}": "v" for i in range(32)})  # 32 x 128 bytes fill the page
    assert zone.pages_free == 0
    with pytest.raises(KeyvalZoneFull) as err:
        zone.post({"new": "v"})
    assert err.value.text == 'not enough memory in keyval zone "one"'
    assert zone.slot_usage()[128].fails == 1
    zone.patch({"k00": "w" * 40})  # 80 + 3 + 40 = 123: still a 128 slot
    assert zone.get("k00") == {"k00": "w" * 40}
    with pytest.raises(KeyvalZoneFull):
        zone.patch({"k01": "w" * 60})  # 143 -> a 256 slot needs a page the zone lacks
    assert zone.get("k01") == {"k01": "v"}
    assert zone.records_total == 32
    assert zone.slot_usage()[128].used == 32
    assert zone.used_bytes == 32 * 128


def test_update_to_a_bigger_slot_succeeds_when_a_page_is_free():
    zone = make_zone(size=12288)
    zone.post({"a": "1"})
    zone.patch({"a": "x" * 100})
    assert zone.slab_allocations() == [256]
    assert zone.pages_used == 1


def test_several_pairs_that_do_not_all_fit_are_refused_as_a_whole():
    zone = make_zone(size=ONE_PAGE)
    with pytest.raises(KeyvalZoneFull):
        zone.post({f"k{i:02d}": "v" for i in range(33)})
    assert zone.get() == {}
    assert zone.used_bytes == 0


# ---------------------------------------------------------------------------------------------
# zone_sync hooks


def sync_zone(**conf):
    conf.setdefault("timeout_ms", 60_000)
    return make_zone(sync=True, **conf)


def test_local_writes_of_a_sync_zone_queue_each_key_once_in_first_write_order():
    zone = sync_zone()
    zone.post({"a": "1"})
    zone.post({"b": "2"})
    zone.patch({"a": "3"})
    assert zone.pending_keys == ["a", "b"]
    assert zone.records_pending == 2
    assert [(r.key, r.value) for r in zone.drain_pending(10_000)] == [("a", "3"), ("b", "2")]
    assert zone.records_pending == 0


def test_zone_without_sync_queues_nothing():
    zone = make_zone(timeout_ms=1000)
    zone.post({"a": "1"})
    assert zone.records_pending == 0
    assert zone.drain_pending(10_000) == []


def test_deletes_are_local_only_and_leave_the_queue():
    zone = sync_zone()
    zone.post({"a": "1"})
    zone.post({"b": "2"})
    zone.patch({"a": None})
    assert zone.pending_keys == ["b"]
    zone.delete_all()
    assert zone.records_pending == 0


def test_expired_pairs_leave_the_queue():
    zone = sync_zone(timeout_ms=100)
    zone.post({"a": "1"})
    run_to(zone, 100)
    assert zone.records_pending == 0


def test_drain_stops_at_the_byte_budget_and_keeps_the_rest_in_order():
    zone = sync_zone()
    zone.post({"a": "1"})  # 24 + 1 + 1 = 26 wire bytes each
    zone.post({"b": "2"})
    zone.post({"c": "3"})
    first = zone.drain_pending(60)
    assert [r.key for r in first] == ["a", "b"]
    assert zone.pending_keys == ["c"]
    assert [r.key for r in zone.drain_pending(26)] == ["c"]


def test_drain_skips_a_record_larger_than_the_budget_and_counts_it():
    zone = sync_zone()
    zone.post({"big": "x" * 200})
    zone.post({"a": "1"})
    out = zone.drain_pending(100)
    assert [r.key for r in out] == ["a"]
    assert zone.skipped_records == 1
    assert zone.records_pending == 0
    assert zone.get("big") == {"big": "x" * 200}  # skipped on the wire, still stored here


def test_drain_skips_records_larger_than_one_buffer_even_within_the_total_budget():
    zone = sync_zone()
    zone.post({"big": "x" * 200})
    assert zone.drain_pending(8 * 128, max_record_bytes=128) == []
    assert zone.skipped_records == 1


def test_drained_record_carries_timestamp_origin_and_expiry():
    zone = sync_zone(node="n1", offset_ms=5.0)
    zone.env.run(until=40)
    zone.post({"a": "1"})
    (pair,) = zone.drain_pending(1000)
    assert pair.timestamp == DEFAULT_EPOCH_MS + 45
    assert pair.origin == "n1"
    assert zone.expiries([pair]) == (60_040,)
    rec = zone.record("a")
    assert (rec.timestamp, rec.origin, rec.expire_at) == (pair.timestamp, "n1", 60_040)
    assert rec.expire_in(1040) == 59_000


def test_apply_remote_inserts_an_absent_key_without_queueing_it():
    zone = sync_zone()
    assert zone.apply_remote("a", "r", 1000.0, "n2", 500) == "inserted"
    assert zone.get() == {"a": "r"}
    assert zone.record("a").origin == "n2"
    assert zone.records_pending == 0
    run_to(zone, 500)
    assert zone.get() == {}


def test_apply_remote_newer_timestamp_wins_and_older_is_ignored():
    zone = sync_zone()
    zone.post({"a": "local"})
    local_ts = zone.record("a").timestamp
    assert zone.apply_remote("a", "old", local_ts - 1, "n2", 1000) == "ignored"
    assert zone.get() == {"a": "local"}
    assert zone.pending_keys == ["a"]
    assert zone.apply_remote("a", "new", local_ts + 1, "n2", 1000) == "updated"
    assert zone.get() == {"a": "new"}
    assert zone.records_pending == 0  # the key now holds n2's write, which is not ours to send


def test_apply_remote_tie_goes_to_the_greater_origin_name():
    zone = sync_zone(node="node2")
    zone.post({"a": "local"})
    ts = zone.record("a").timestamp
    assert zone.apply_remote("a", "from1", ts, "node1", 1000) == "ignored"
    assert zone.apply_remote("a", "from2", ts, "node2", 1000) == "ignored"
    assert zone.apply_remote("a", "from3", ts, "node3", 1000) == "updated"
    assert zone.get() == {"a": "from3"}


def test_apply_remote_ignores_an_already_expired_record_and_reports_no_memory():
    zone = sync_zone(size=ONE_PAGE)
    assert zone.apply_remote("a", "1", 1.0, "n2", 0) == "ignored"
    for i in range(32):
        assert zone.apply_remote(f"k{i:02d}", "v", 1.0, "n2", 1000) == "inserted"
    assert zone.apply_remote("zz", "v", 1.0, "n2", 1000) == "no_memory"
    assert zone.records_total == 32


def test_snapshot_lists_local_and_received_records():
    zone = sync_zone()
    zone.post({"a": "1"})
    zone.apply_remote("b", "2", 1.0, "n2", 1000)
    assert [(r.key, r.origin) for r in zone.snapshot()] == [("a", "node1"), ("b", "n2")]


def test_record_wire_bytes_count_utf8_bytes():
    zone = sync_zone()
    zone.post({"é": "ü"})
    assert zone.record("é").wire_bytes == 24 + 2 + 2


# ---------------------------------------------------------------------------------------------
# State file


def test_state_file_is_written_on_change_and_restored_on_restart_with_remaining_expiry(tmp_path):
    zone = make_zone(state="/var/lib/nginx/one.json", state_dir=tmp_path, timeout_ms=10_000)
    zone.post({"a": "1"})
    run_to(zone, 4000)
    zone.post({"b": {"value": "2", "expire": 1000}})
    path = tmp_path / "var/lib/nginx/one.json"
    assert zone.state_path == path
    doc = json.loads(path.read_text())
    assert [r["key"] for r in doc["records"]] == ["a", "b"]
    assert doc["records"][0]["expire"] == DEFAULT_EPOCH_MS + 10_000
    assert not list(tmp_path.rglob("*.tmp"))
    run_to(zone, 4500)
    assert zone.restart() == 2
    assert zone.get() == {"a": "1", "b": "2"}
    assert zone.record("a").expire_at == 10_000
    assert zone.record("b").expire_at == 5000
    assert zone.record("a").timestamp == DEFAULT_EPOCH_MS


def test_restart_drops_pairs_that_expired_while_down(tmp_path):
    zone = make_zone(state="one.json", state_dir=tmp_path, timeout_ms=1000)
    zone.post({"a": "1"})
    run_to(zone, 500)
    zone.post({"b": "2"})
    run_to(zone, 1200)
    assert zone.restart() == 1
    assert zone.get() == {"b": "2"}


def test_a_new_zone_object_loads_the_file_another_one_wrote(tmp_path):
    env = simpy.Environment()
    first = make_zone(env, state="one.json", state_dir=tmp_path, sync=True, timeout_ms=1000)
    first.post({"a": "1"})
    second = make_zone(env, state="one.json", state_dir=tmp_path, sync=True, timeout_ms=1000)
    assert second.load_state() == 1
    assert second.get() == {"a": "1"}
    assert second.records_pending == 0


def test_without_state_dir_the_state_is_kept_in_memory_across_restart():
    zone = make_zone(state="one.json")
    zone.post({"a": "1"})
    zone.patch({"a": "2"})
    assert zone.restart() == 1
    assert zone.get() == {"a": "2"}


def test_without_state_restart_empties_the_zone():
    zone = make_zone()
    zone.post({"a": "1"})
    assert zone.restart() == 0
    assert zone.get() == {}
    assert zone.used_bytes == 0


def test_deferred_writes_lose_only_what_was_not_saved(tmp_path):
    zone = make_zone(state="one.json", state_dir=tmp_path, write_through=False)
    zone.post({"a": "1"})
    assert zone.dirty
    assert not (tmp_path / "one.json").exists()
    zone.save()
    assert not zone.dirty
    zone.post({"b": "2"})
    assert zone.restart() == 1
    assert zone.get() == {"a": "1"}


def test_a_pair_read_back_at_restart_still_expires_and_is_freed_by_the_next_write(tmp_path):
    zone = make_zone(state="one.json", state_dir=tmp_path, timeout_ms=1000)
    zone.post({"a": "1"})
    zone.restart()
    assert zone.get() == {"a": "1"}
    run_to(zone, 1000.5)
    assert zone.get() == {}
    zone.post({"b": "2"})
    assert zone.used_bytes == 128 and zone.records_total == 1


def test_a_foreign_state_file_is_an_error(tmp_path):
    (tmp_path / "one.json").write_text('{"a": "1"}')
    zone = make_zone(state="one.json", state_dir=tmp_path)
    with pytest.raises(KeyvalStateError):
        zone.load_state()


# ---------------------------------------------------------------------------------------------
# Invariants

_keys = st.sampled_from(["a", "b", "c", "10.0.0.1", "10.0.0.0/8", "k" * 50])
_values = st.one_of(st.sampled_from(["", "1", "x" * 30, "y" * 200, "z" * 3000]), st.integers(0, 99))
_ops = st.one_of(
    st.tuples(st.just("post"), st.dictionaries(_keys, _values, min_size=1, max_size=3)),
    st.tuples(st.just("post_expire"), _keys, _values, st.integers(0, 3000)),
    st.tuples(st.just("patch"), _keys, st.one_of(st.none(), _values)),
    st.tuples(st.just("delete_all")),
    st.tuples(
        st.just("remote"),
        _keys,
        st.sampled_from(["r", "s" * 100]),
        st.integers(-5, 5),
        st.integers(-10, 3000),
    ),
    st.tuples(st.just("wait"), st.floats(0.5, 2500)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_ops, max_size=40), kind=st.sampled_from(["string", "ip", "prefix"]))
def test_random_operations_keep_counts_and_memory_consistent(ops, kind):
    zone = make_zone(size=16384, type=kind, timeout_ms=1000, sync=True)
    for op in ops:
        try:
            if op[0] == "post":
                zone.post(op[1])
            elif op[0] == "post_expire":
                zone.post({op[1]: {"value": op[2], "expire": op[3]}})
            elif op[0] == "patch":
                zone.patch({op[1]: op[2]})
            elif op[0] == "delete_all":
                zone.delete_all()
            elif op[0] == "remote":
                zone.apply_remote(op[1], op[2], zone.clock.now_ms() + op[3], "n2", op[4])
            else:
                run_to(zone, zone.env.now + op[1])
        except (KeyvalFormatError, KeyvalKeyExists, KeyvalKeyNotFound, KeyvalZoneFull):
            pass
        live = zone.get()
        # expired pairs hold memory until the next write frees them
        assert zone.records_total >= len(live)
        assert zone.used_bytes <= zone.conf.size
        assert zone.used_bytes == sum(zone.slab_allocations())
        assert zone.pages_used <= zone.pages_total
        slotted = [size for size in zone.slab_allocations() if size <= 2048]
        assert sum(s.used for s in zone.slot_usage().values()) == len(slotted)
        assert set(zone.pending_keys) <= set(live)
        assert all(zone.record(k).expire_at > zone.env.now for k in live)
