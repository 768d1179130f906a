from sim.conf.config import LimitConnConf, LimitConnZoneConf, LimitReqConf, LimitReqZoneConf
from sim.zones.limits import LimitConnZone, LimitReqZone, limit_conn, limit_req
from sim.zones.slabs import SlabPool


def req_zone(name="one", rate=1.0, size=1024 * 1024, key="$binary_remote_addr", slab=None):
    return LimitReqZone(LimitReqZoneConf(name=name, key=key, size=size, rate_per_s=rate), slab)


def conn_zone(name="addr", size=1024 * 1024, slab=None):
    return LimitConnZone(LimitConnZoneConf(name=name, kind="http", key="$binary_remote_addr", size=size), slab)


def counters(zone):
    return (zone.passed, zone.delayed, zone.rejected, zone.delayed_dry_run, zone.rejected_dry_run)


# -- limit_req ----------------------------------------------------------------------------------


def test_rate_1rs_burst_2_delays_the_2nd_and_3rd_and_rejects_the_4th_immediate_request():
    zone = req_zone()
    limit = LimitReqConf(zone="one", burst=2)
    outcomes = [zone.check("10.0.0.1", 0.0, limit) for _ in range(4)]
    assert outcomes == [("passed", 0.0), ("delayed", 1000.0), ("delayed", 2000.0), ("rejected", 0.0)]
    assert counters(zone) == (1, 2, 1, 0, 0)


def test_nodelay_passes_the_whole_burst_at_once():
    zone = req_zone()
    limit = LimitReqConf(zone="one", burst=2, nodelay=True)
    outcomes = [zone.check("10.0.0.1", 0.0, limit)[0] for _ in range(4)]
    assert outcomes == ["passed", "passed", "passed", "rejected"]
    assert counters(zone) == (3, 0, 1, 0, 0)


def test_delay_1_passes_one_excess_request_undelayed_and_delays_the_next():
    zone = req_zone()
    limit = LimitReqConf(zone="one", burst=2, delay=1)
    outcomes = [zone.check("10.0.0.1", 0.0, limit) for _ in range(4)]
    assert outcomes == [("passed", 0.0), ("passed", 0.0), ("delayed", 1000.0), ("rejected", 0.0)]


def test_the_bucket_leaks_at_the_rate_and_a_rejection_leaves_it_untouched():
    zone = req_zone(rate=2.0)
    limit = LimitReqConf(zone="one", burst=1)
    assert zone.check("k", 0.0, limit) == ("passed", 0.0)
    assert zone.check("k", 0.0, limit) == ("delayed", 500.0)
    assert zone.check("k", 0.0, limit)[0] == "rejected"
    assert zone.state("k") == (1000, 0)
    # 250 ms leak half a request: 1000 - 500 + 1000 = 1500 > 1000
    assert zone.check("k", 250.0, limit)[0] == "rejected"
    # 500 ms leak a whole one: 1000 - 1000 + 1000
    assert zone.check("k", 500.0, limit) == ("delayed", 500.0)
    assert zone.state("k") == (1000, 500)
    # after a long pause the bucket is empty and the request counts from zero
    assert zone.check("k", 60_000.0, limit) == ("passed", 0.0)
    assert zone.state("k") == (0, 60_000)


def test_keys_have_separate_buckets():
    zone = req_zone()
    limit = LimitReqConf(zone="one")
    assert zone.check("a", 0.0, limit)[0] == "passed"
    assert zone.check("b", 0.0, limit)[0] == "passed"
    assert zone.check("a", 0.0, limit)[0] == "rejected"
    assert len(zone) == 2


def test_rate_per_minute_is_kept_in_whole_thousandths_as_nginx_does():
    assert req_zone(rate=30 / 60).rate == 500
    assert req_zone(rate=1 / 60).rate == 16
    zone = req_zone(rate=30 / 60)
    limit = LimitReqConf(zone="one", burst=1)
    zone.check("k", 0.0, limit)
    assert zone.check("k", 0.0, limit) == ("delayed", 2000.0)


def test_dry_run_counts_would_be_delays_and_rejections_and_lets_requests_through():
    zone = req_zone()
    limit = LimitReqConf(zone="one", burst=1, dry_run=True)
    outcomes = [zone.check("k", 0.0, limit) for _ in range(3)]
    assert outcomes == [("passed", 0.0), ("delayed_dry_run", 0.0), ("rejected_dry_run", 0.0)]
    assert counters(zone) == (1, 0, 0, 1, 1)
    # the would-be delayed request was taken into the bucket; the would-be rejected one was not
    assert zone.state("k") == (1000, 0)


def test_an_empty_key_passes_and_is_not_accounted():
    zone = req_zone()
    limit = LimitReqConf(zone="one")
    assert [zone.check("", 0.0, limit) for _ in range(3)] == [("passed", 0.0)] * 3
    assert counters(zone) == (0, 0, 0, 0, 0)
    assert len(zone) == 0


def test_several_limits_apply_the_longest_delay_and_each_zone_counts_its_own_verdict():
    slow = req_zone(name="slow", rate=1.0)
    fast = req_zone(name="fast", rate=4.0)
    checks = [(slow, "k", LimitReqConf(zone="slow", burst=5)), (fast, "k", LimitReqConf(zone="fast", burst=5))]
    assert limit_req(checks, 0.0) == ("passed", 0.0)
    assert limit_req(checks, 0.0) == ("delayed", 1000.0)  # slow: 1000 ms, fast: 250 ms
    assert slow.state("k") == (1000, 0)
    assert fast.state("k") == (1000, 0)
    assert counters(slow) == (1, 1, 0, 0, 0)
    assert counters(fast) == (1, 1, 0, 0, 0)


def test_a_later_limit_rejecting_leaves_earlier_buckets_untouched_and_uncounted():
    wide = req_zone(name="wide")
    narrow = req_zone(name="narrow")
    checks = [(wide, "k", LimitReqConf(zone="wide", burst=5)), (narrow, "k", LimitReqConf(zone="narrow"))]
    assert limit_req(checks, 0.0) == ("passed", 0.0)
    assert limit_req(checks, 0.0) == ("rejected", 0.0)
    assert wide.state("k") == (0, 0)
    assert counters(wide) == (1, 0, 0, 0, 0)
    assert counters(narrow) == (1, 0, 1, 0, 0)


def test_the_first_rejecting_limit_stops_the_walk():
    first = req_zone(name="first")
    second = req_zone(name="second")
    checks = [(first, "k", LimitReqConf(zone="first")), (second, "k", LimitReqConf(zone="second", burst=9))]
    limit_req(checks, 0.0)
    assert limit_req(checks, 0.0)[0] == "rejected"
    assert counters(first) == (1, 0, 1, 0, 0)
    assert counters(second) == (1, 0, 0, 0, 0)
    assert second.state("k") == (0, 0)


def test_idle_drained_states_are_dropped_when_new_ones_are_created():
    zone = req_zone()
    limit = LimitReqConf(zone="one", burst=5)
    zone.check("old", 0.0, limit)
    zone.check("recent", 30_000.0, limit)
    zone.check("new", 60_000.0, limit)
    assert zone.state("old") is None
    assert zone.state("recent") is not None
    assert len(zone) == 2


def test_an_idle_state_whose_bucket_has_not_drained_is_kept():
    zone = req_zone(rate=1 / 60)  # 16 thousandths a second: 976 leak in 61 s
    limit = LimitReqConf(zone="one", burst=5)
    for _ in range(3):
        zone.check("old", 0.0, limit)
    zone.check("new", 61_000.0, limit)
    assert zone.state("old") == (2000, 0)


def test_states_take_slab_memory_and_a_full_zone_evicts_the_least_recently_used():
    zone = req_zone(size=32 * 1024)  # 7 pages; the zone's own context takes a 128 and a 32 page
    limit = LimitReqConf(zone="one")
    assert zone.slab.stats()["pages"] == {"used": 2, "free": 5}
    capacity = 31 + 5 * 32  # 84-byte states ($binary_remote_addr) in 128-byte slots
    for i in range(capacity):
        assert zone.check(f"10.0.{i // 256}.{i % 256}", 0.0, limit)[0] == "passed"
    assert zone.slab.slot_stats(128)["free"] == 0
    assert zone.check("10.9.9.9", 0.0, limit)[0] == "passed"
    assert len(zone) == capacity
    assert zone.state("10.0.0.0") is None  # the oldest went
    assert zone.slab.slot_stats(128)["fails"] == 1


def test_no_memory_even_after_eviction_rejects_the_request():
    zone = req_zone(key="$uri", size=32 * 1024)
    limit = LimitReqConf(zone="one")
    for i in range(31 + 5 * 32):
        zone.check(f"/k{i:03d}", 0.0, limit)  # 85 bytes: 128-byte slots fill every page
    long_key = "/" + "x" * 100  # 181 bytes needs a 256-byte slot: freeing one 128 does not help
    assert zone.check(long_key, 0.0, limit) == ("rejected", 0.0)
    assert zone.rejected == 1
    assert zone.state(long_key) is None
    assert len(zone) == 31 + 5 * 32 - 1  # the oldest state was dropped all the same
    assert zone.slab.slot_stats(256)["fails"] == 2


def test_reset_statistics_zeroes_the_counters_but_keeps_the_buckets():
    zone = req_zone()
    limit = LimitReqConf(zone="one")
    zone.check("k", 0.0, limit)
    zone.check("k", 0.0, limit)
    zone.reset_statistics()
    assert counters(zone) == (0, 0, 0, 0, 0)
    assert zone.check("k", 0.0, limit)[0] == "rejected"


# -- limit_conn ---------------------------------------------------------------------------------


def test_limit_conn_passes_up_to_number_then_rejects_and_release_makes_room():
    zone = conn_zone()
    limit = LimitConnConf(zone="addr", number=2)
    assert [zone.acquire("k", limit) for _ in range(3)] == ["passed", "passed", "rejected"]
    assert zone.conns("k") == 2
    zone.release("k")
    assert zone.acquire("k", limit) == "passed"
    assert (zone.passed, zone.rejected, zone.rejected_dry_run) == (3, 1, 0)


def test_a_limit_conn_state_is_freed_with_its_last_connection():
    zone = conn_zone()
    limit = LimitConnConf(zone="addr", number=5)
    before = zone.slab.slot_stats(64)["used"]
    zone.acquire("k", limit)
    zone.acquire("k", limit)
    assert zone.slab.slot_stats(64)["used"] == before + 1  # 36 + 4 bytes
    zone.release("k")
    zone.release("k")
    assert len(zone) == 0
    assert zone.slab.slot_stats(64)["used"] == before


def test_limit_conn_dry_run_counts_the_rejection_and_holds_nothing():
    zone = conn_zone()
    limit = LimitConnConf(zone="addr", number=1, dry_run=True)
    assert zone.acquire("k", limit) == "passed"
    assert zone.acquire("k", limit) == "rejected_dry_run"
    assert zone.conns("k") == 1
    assert (zone.passed, zone.rejected, zone.rejected_dry_run) == (1, 0, 1)


def test_limit_conn_with_an_empty_key_passes_uncounted():
    zone = conn_zone()
    limit = LimitConnConf(zone="addr", number=1)
    assert [zone.acquire("", limit) for _ in range(3)] == ["passed"] * 3
    zone.release("")
    assert (zone.passed, zone.rejected, len(zone)) == (0, 0, 0)


def test_a_limit_conn_rejection_gives_back_what_earlier_zones_took():
    per_ip = conn_zone(name="per_ip")
    per_server = conn_zone(name="per_server")
    checks = [
        (per_ip, "10.0.0.1", LimitConnConf(zone="per_ip", number=5)),
        (per_server, "example.com", LimitConnConf(zone="per_server", number=1)),
    ]
    outcome, held = limit_conn(checks)
    assert outcome == "passed"
    assert held == [(per_ip, "10.0.0.1"), (per_server, "example.com")]
    assert limit_conn(checks) == ("rejected", [])
    assert per_ip.conns("10.0.0.1") == 1
    assert (per_ip.passed, per_ip.rejected) == (1, 0)
    assert (per_server.passed, per_server.rejected) == (1, 1)
    for zone, key in held:
        zone.release(key)
    assert len(per_ip) == len(per_server) == 0


def test_a_limit_conn_zone_out_of_memory_rejects_new_keys():
    zone = conn_zone(slab=SlabPool(4096))  # no pages at all
    assert zone.acquire("k", LimitConnConf(zone="addr", number=10)) == "rejected"
    assert zone.rejected == 1
    assert len(zone) == 0


def test_limit_conn_reset_statistics_keeps_the_connections():
    zone = conn_zone()
    limit = LimitConnConf(zone="addr", number=1)
    zone.acquire("k", limit)
    zone.acquire("k", limit)
    zone.reset_statistics()
    assert (zone.passed, zone.rejected, zone.conns("k")) == (0, 0, 1)
