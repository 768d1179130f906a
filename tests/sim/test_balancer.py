"""Peer selection by each of NGINX's load-balancing methods (sim.upstream.balancer)."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.upstream.balancer import (
    ConsistentHash,
    Hash,
    IpHash,
    LeastConn,
    LeastTime,
    RoundRobin,
    ip_hash_bytes,
    least_time_eta,
    make_balancer,
    smooth_weighted_round_robin,
)


@dataclass(eq=False)
class Peer:
    name: str
    weight: int = 1
    lb_weight: int = 0
    effective_weight: int = -1
    current_weight: int = 0
    active: int = 0
    header_time: float | None = None
    response_time: float | None = None
    connect_time: float | None = None
    first_byte_time: float | None = None
    host: str = ""
    port: int | None = 80
    address: str = ""

    def __post_init__(self):
        self.lb_weight = self.lb_weight or self.weight
        if self.effective_weight < 0:
            self.effective_weight = self.lb_weight
        self.host = self.host or self.name
        self.address = self.address or f"{self.host}:{self.port}"


def peers(*weights: int) -> list[Peer]:
    return [Peer("abcdefghijklmnopqrstuvwxyz"[i], weight=w) for i, w in enumerate(weights)]


def anyone(peer) -> bool:
    return True


def names(balancer, group, n, eligible=anyone, key=None, now=0.0) -> str:
    return "".join(balancer.select(group, eligible, key, now).name for _ in range(n))


def fell_back_to_round_robin(balancer, group, key) -> bool:
    """Whether choosing among only b and c (a is unusable) took nginx's round robin fallback:
    that steps both b's and c's weights and picks b, where a hashed or random hit on b or c
    would leave c's ``current_weight`` at 0 or pick c."""
    chosen = balancer.select(group, lambda p: p.name in ("b", "c"), key, 0.0)
    return chosen is group[1] and group[2].current_weight == 1


ALL_METHODS = [
    ("round_robin", {}),
    ("least_conn", {}),
    ("least_time", {"least_time_mode": "header"}),
    ("hash", {}),
    ("hash", {"hash_consistent": True}),
    ("ip_hash", {}),
    ("random", {}),
    ("random", {"random_two": True}),
    ("random", {"random_two": True, "random_method": "least_time=last_byte"}),
]


# --------------------------------------------------------------------------------------------
# round robin


def test_round_robin_weights_5_1_1_give_a_a_b_a_c_a_a():
    assert names(RoundRobin(), peers(5, 1, 1), 14) == "aabacaa" * 2


def test_round_robin_equal_weights_rotate_in_configuration_order():
    assert names(RoundRobin(), peers(1, 1, 1), 7) == "abcabca"


def test_round_robin_skips_an_ineligible_peer_and_shares_among_the_rest():
    group = peers(1, 1, 1)
    assert names(RoundRobin(), group, 6, eligible=lambda p: p.name != "b") == "acacac"
    assert group[1].current_weight == 0


def test_round_robin_effective_weight_recovers_one_step_per_selection_after_a_failure():
    group = peers(5, 1, 1)
    group[0].effective_weight = 0  # weight 5, max_fails=1: one failure takes all 5 away
    picked, recovered = [], []
    for _ in range(6):
        picked.append(smooth_weighted_round_robin(group, anyone).name)
        recovered.append(group[0].effective_weight)
    assert "".join(picked) == "bcaaba"
    assert recovered == [1, 2, 3, 4, 5, 5]


def test_round_robin_uses_lb_weight_during_slow_start():
    group = peers(3, 1)
    group[0].lb_weight = group[0].effective_weight = 1
    assert names(RoundRobin(), group, 4) == "abab"


def test_round_robin_returns_none_when_no_peer_is_eligible():
    assert RoundRobin().select(peers(1, 1), lambda p: False, None, 0.0) is None


# --------------------------------------------------------------------------------------------
# least_conn


def test_least_conn_picks_the_peer_with_fewest_active_connections():
    group = peers(1, 1, 1)
    group[0].active, group[1].active, group[2].active = 3, 1, 2
    assert LeastConn().select(group, anyone, None, 0.0) is group[1]


def test_least_conn_divides_connections_by_weight():
    group = peers(2, 1)
    group[0].active, group[1].active = 3, 2  # 1.5 per weight against 2
    assert LeastConn().select(group, anyone, None, 0.0) is group[0]


def test_least_conn_shares_ties_by_weighted_round_robin_among_tied_peers_only():
    group = peers(1, 1, 2)
    group[0].active = 1
    assert names(LeastConn(), group, 3) == "cbc"
    assert group[0].current_weight == 0


def test_least_conn_without_ties_leaves_round_robin_state_alone():
    group = peers(1, 1)
    group[1].active = 4
    assert LeastConn().select(group, anyone, None, 0.0) is group[0]
    assert [p.current_weight for p in group] == [0, 0]


def test_least_conn_ignores_an_ineligible_less_loaded_peer():
    group = peers(1, 1)
    group[1].active = 5
    assert LeastConn().select(group, lambda p: p.name != "a", None, 0.0) is group[1]


# --------------------------------------------------------------------------------------------
# least_time


@pytest.mark.parametrize(
    "average, active, eta",
    [
        (None, 0, 20),  # no sample yet: 0 lifted to the first cluster
        (35.0, 0, 40),
        (40.0, 0, 60),  # an exact multiple of 20 is lifted to the next one, as nginx does
        (35.0, 2, 120),
        (5001.0, 0, 5000),
        (9000.0, 1, 10000),
    ],
)
def test_least_time_eta_clusters_the_average_by_20ms_caps_at_5s_and_scales_by_connections(
    average, active, eta
):
    peer = Peer("a", header_time=average, active=active)
    assert least_time_eta(peer, 0.0, "header_time") == eta


def test_least_time_picks_the_fastest_peer():
    group = peers(1, 1)
    group[0].header_time, group[1].header_time = 95.0, 30.0
    assert LeastTime("header").select(group, anyone, None, 0.0) is group[1]


def test_least_time_last_byte_ranks_by_response_time_not_header_time():
    group = peers(1, 1)
    group[0].header_time, group[0].response_time = 10.0, 500.0
    group[1].header_time, group[1].response_time = 90.0, 100.0
    assert LeastTime("last_byte").select(group, anyone, None, 0.0) is group[1]
    assert LeastTime("header").select(group, anyone, None, 0.0) is group[0]


def test_least_time_stream_modes_rank_by_connect_and_first_byte_times():
    group = peers(1, 1)
    group[0].connect_time, group[0].first_byte_time = 5.0, 300.0
    group[1].connect_time, group[1].first_byte_time = 60.0, 80.0
    assert LeastTime("connect").select(group, anyone, None, 0.0) is group[0]
    assert LeastTime("first_byte").select(group, anyone, None, 0.0) is group[1]


def test_least_time_counts_active_connections_against_a_fast_peer():
    group = peers(1, 1)
    group[0].header_time = 100.0  # 120 * 1
    group[1].header_time, group[1].active = 30.0, 3  # 40 * 4
    assert LeastTime("header").select(group, anyone, None, 0.0) is group[0]


def test_least_time_weighs_the_estimate_by_weight():
    group = peers(2, 1)
    group[0].header_time = 190.0  # 200 per 2 of weight
    group[1].header_time = 110.0  # 120 per 1
    assert LeastTime("header").select(group, anyone, None, 0.0) is group[0]


def test_least_time_shares_peers_with_close_averages_by_round_robin():
    group = peers(1, 1, 1)
    group[0].header_time, group[1].header_time, group[2].header_time = 41.0, 55.0, 75.0  # 60, 60, 80
    assert names(LeastTime("header"), group, 4) == "abab"
    assert group[2].current_weight == 0


def test_least_time_halves_a_stale_average_once_per_fail_timeout_plus_one_second():
    peer = Peer("a", header_time=400.0)
    peer.checked = 0.0
    ten_seconds = lambda p: 10_000.0  # noqa: E731
    assert least_time_eta(peer, 10_999.0, "header_time", fail_timeout_ms_of=ten_seconds) == 420
    assert least_time_eta(peer, 11_000.0, "header_time", fail_timeout_ms_of=ten_seconds) == 220
    assert least_time_eta(peer, 22_000.0, "header_time", fail_timeout_ms_of=ten_seconds) == 120


def test_least_time_inflight_raises_the_average_to_the_age_of_incomplete_requests():
    group = peers(1, 1)
    group[0].header_time, group[1].header_time = 50.0, 100.0
    ages = {"a": 700.0, "b": None}
    balancer = LeastTime("header", inflight=True, inflight_time_of=lambda p, now: ages[p.name])
    assert balancer.eta(group[0], 0.0) == 720
    assert balancer.select(group, anyone, None, 0.0) is group[1]


def test_least_time_inflight_reads_the_peers_own_inflight_time_by_default():
    class SlowPeer(Peer):
        def inflight_time(self, now):
            return now / 2

    peer = SlowPeer("a", header_time=10.0)
    assert LeastTime("header", inflight=True).eta(peer, 1000.0) == 520
    assert LeastTime("header", inflight=False).eta(peer, 1000.0) == 20


# --------------------------------------------------------------------------------------------
# hash


def test_hash_maps_a_key_by_the_cache_memcached_formula():
    # (crc32("/index.html") >> 16) & 0x7fff == 27170; 27170 % (1+2+3) == 2 falls in b's slice
    assert (zlib.crc32(b"/index.html") >> 16) & 0x7FFF == 27170
    group = peers(1, 2, 3)
    assert Hash().select(group, anyone, "/index.html", 0.0) is group[1]


def test_hash_is_deterministic_across_balancers_and_calls():
    keys = [f"/item/{i}" for i in range(200)]
    first = [Hash().select(peers(1, 2, 3), anyone, k, 0.0).name for k in keys]
    again = [Hash().select(peers(1, 2, 3), anyone, k, 0.0).name for k in keys]
    assert first == again
    assert set(first) == {"a", "b", "c"}


def test_hash_rehashes_with_the_attempt_number_prefixed_when_the_peer_is_unusable():
    group = peers(1, 1, 1, 1, 1)
    key = b"/index.html"
    first = (zlib.crc32(key) >> 16) & 0x7FFF
    second = first + ((zlib.crc32(b"1" + key) >> 16) & 0x7FFF)
    assert first % 5 != second % 5
    chosen = Hash().select(group, lambda p: p is not group[first % 5], key, 0.0)
    assert chosen is group[second % 5]


def test_hash_with_an_empty_key_is_round_robin():
    assert names(Hash(), peers(5, 1, 1), 7, key="") == "aabacaa"


def test_hash_falls_back_to_round_robin_when_every_hashed_peer_is_unusable():
    # all 21 picks for "/x" land in a's slice of 102
    assert fell_back_to_round_robin(Hash(), peers(100, 1, 1), "/x")


# --------------------------------------------------------------------------------------------
# hash consistent


def ring_owners(group, keys):
    ring = ConsistentHash()
    ring.rebuild(group)
    return [ring.select(group, anyone, k, 0.0).name for k in keys]


def named(*names_: str) -> list[Peer]:
    return [Peer(n, host=f"10.0.0.{i + 1}", port=8080) for i, n in enumerate(names_)]


KEYS = [f"/object/{i}" for i in range(10_000)]


def test_consistent_hash_moves_about_one_sixth_of_keys_when_a_sixth_server_is_added():
    before = ring_owners(named("a", "b", "c", "d", "e"), KEYS)
    after = ring_owners(named("a", "b", "c", "d", "e", "f"), KEYS)
    moved = [k for k, x, y in zip(KEYS, before, after, strict=True) if x != y]
    assert 0.10 <= len(moved) / len(KEYS) <= 0.25
    assert all(y == "f" for x, y in zip(before, after, strict=True) if x != y)


def test_consistent_hash_moves_only_the_keys_of_a_removed_server():
    before = ring_owners(named("a", "b", "c", "d", "e"), KEYS)
    group = named("a", "b", "c", "d", "e")
    del group[2]
    after = ring_owners(group, KEYS)
    for x, y in zip(before, after, strict=True):
        assert (x == y) if x != "c" else (y != "c")
    assert before.count("c") > 0


def test_consistent_hash_ring_depends_on_server_address_not_on_configuration_order():
    forward = ring_owners(named("a", "b", "c"), KEYS[:500])
    backward = ring_owners(list(reversed(named("a", "b", "c"))), KEYS[:500])
    assert forward == backward


def test_consistent_hash_skips_to_the_next_point_when_its_server_is_unusable():
    group = named("a", "b", "c")
    owners = ring_owners(group, KEYS[:300])
    ring = ConsistentHash()
    for key, owner in zip(KEYS[:300], owners, strict=True):
        chosen = ring.select(group, lambda p, o=owner: p.name != o, key, 0.0)
        assert chosen.name != owner


def test_consistent_hash_builds_its_ring_on_first_use_and_after_the_group_grows():
    ring = ConsistentHash()
    group = named("a", "b")
    assert ring.select(group, anyone, "/k", 0.0) is not None
    group.append(Peer("c", host="10.0.0.3", port=8080))
    seen = {ring.select(group, anyone, k, 0.0).name for k in KEYS[:300]}
    assert seen == {"a", "b", "c"}


def test_consistent_hash_falls_back_to_round_robin_when_every_point_is_unusable():
    group = named("a", "b", "c")
    group[0].weight = group[0].lb_weight = group[0].effective_weight = 100
    # the 21 ring points from crc32("/y") onwards all belong to a
    assert fell_back_to_round_robin(ConsistentHash(), group, "/y")


def test_consistent_hash_with_an_empty_key_is_round_robin():
    assert names(ConsistentHash(), peers(5, 1, 1), 7, key=None) == "aabacaa"


# --------------------------------------------------------------------------------------------
# ip_hash


def test_ip_hash_hashes_the_first_three_octets_of_ipv4_and_all_of_ipv6():
    assert ip_hash_bytes("10.1.2.3") == bytes([10, 1, 2])
    assert ip_hash_bytes("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert ip_hash_bytes("unix:") == b"\0\0\0"


def test_ip_hash_maps_a_client_by_the_113_6271_recurrence():
    # 89 -> 3796 -> 2521 -> 2680 over bytes 10, 1, 2; 2680 % 3 == 1
    group = peers(1, 1, 1)
    assert IpHash().select(group, anyone, "10.1.2.3", 0.0) is group[1]


def test_ip_hash_sends_the_same_slash_24_to_the_same_peer():
    group = peers(1, 1, 1, 1)
    owners = {IpHash().select(group, anyone, f"192.168.7.{i}", 0.0).name for i in range(256)}
    assert len(owners) == 1
    spread = {IpHash().select(group, anyone, f"192.168.{i}.1", 0.0).name for i in range(256)}
    assert spread == {"a", "b", "c", "d"}


def test_ip_hash_distinguishes_ipv6_clients_by_their_whole_address():
    group = peers(1, 1, 1, 1)
    owners = {IpHash().select(group, anyone, f"2001:db8::{i:x}", 0.0).name for i in range(64)}
    assert len(owners) > 1


def test_ip_hash_continues_the_running_hash_when_the_peer_is_unusable():
    # second round over 10, 1, 2 from 2680 -> 4363 (% 3 == 1, b again); third -> 5432 (% 3 == 2)
    group = peers(1, 1, 1)
    assert IpHash().select(group, lambda p: p.name != "b", "10.1.2.3", 0.0) is group[2]


def test_ip_hash_falls_back_to_round_robin_when_every_hashed_peer_is_unusable():
    # from 10.0.0.x all 21 rounds of the hash land in a's slice of 102
    assert fell_back_to_round_robin(IpHash(), peers(100, 1, 1), "10.0.0.1")


# --------------------------------------------------------------------------------------------
# random


def test_random_picks_peers_in_proportion_to_weight():
    balancer = make_balancer("random", rng=np.random.default_rng(42))
    counts = Counter(names(balancer, peers(1, 2, 3), 6000))
    assert counts == {"a": 1027, "b": 2020, "c": 2953}


def test_random_is_reproducible_from_the_seed():
    one = names(make_balancer("random", rng=np.random.default_rng(7)), peers(1, 1, 1), 50)
    two = names(make_balancer("random", rng=np.random.default_rng(7)), peers(1, 1, 1), 50)
    assert one == two


def test_random_two_picks_the_less_loaded_of_two():
    group = peers(1, 1)
    group[0].active, group[1].active = 5, 1
    balancer = make_balancer("random", rng=np.random.default_rng(3), random_two=True)
    assert names(balancer, group, 100) == "b" * 100


def test_random_two_weighs_connections_by_weight():
    group = peers(4, 1)
    group[0].active, group[1].active = 3, 1  # 0.75 per weight against 1
    balancer = make_balancer("random", rng=np.random.default_rng(3), random_two=True)
    assert names(balancer, group, 50) == "a" * 50


def test_random_two_least_time_picks_the_faster_of_two():
    group = peers(1, 1)
    group[0].response_time, group[1].response_time = 30.0, 400.0
    balancer = make_balancer(
        "random", rng=np.random.default_rng(3), random_two=True, random_method="least_time=last_byte"
    )
    assert names(balancer, group, 50) == "a" * 50


def test_random_two_never_picks_the_most_loaded_of_three():
    group = peers(1, 1, 1)
    group[0].active, group[1].active, group[2].active = 0, 1, 9
    balancer = make_balancer("random", rng=np.random.default_rng(5), random_two=True)
    counts = Counter(names(balancer, group, 3000))
    assert counts["c"] == 0
    assert counts["a"] > counts["b"] > 0


@pytest.mark.parametrize("two", [False, True])
def test_random_falls_back_to_round_robin_when_picks_keep_missing(two):
    balancer = make_balancer("random", rng=np.random.default_rng(0), random_two=two)
    assert fell_back_to_round_robin(balancer, peers(1000, 1, 1), None)


def test_random_needs_an_rng():
    with pytest.raises(ValueError, match="rng"):
        make_balancer("random")


@pytest.mark.parametrize("method", ["weighted", "hash consistent"])
def test_make_balancer_rejects_unknown_methods(method):
    with pytest.raises(ValueError, match="unknown balancing method"):
        make_balancer(method)


# --------------------------------------------------------------------------------------------
# every method


@pytest.mark.parametrize("method, options", ALL_METHODS)
def test_every_method_returns_none_when_nothing_is_eligible(method, options):
    balancer = make_balancer(method, rng=np.random.default_rng(0), **options)
    assert balancer.select(peers(1, 2, 3), lambda p: False, "10.0.0.1", 0.0) is None
    assert balancer.select([], anyone, "10.0.0.1", 0.0) is None


@pytest.mark.parametrize("method, options", ALL_METHODS)
def test_every_method_uses_a_single_server_when_it_is_eligible(method, options):
    balancer = make_balancer(method, rng=np.random.default_rng(0), **options)
    group = peers(3)
    assert balancer.select(group, anyone, "10.0.0.1", 0.0) is group[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=8))
def test_round_robin_picks_each_peer_exactly_its_weight_times_per_cycle(weights):
    group = peers(*weights)
    counts = Counter(names(RoundRobin(), group, sum(weights)))
    assert [counts[p.name] for p in group] == weights
    assert all(p.current_weight == 0 for p in group)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.booleans(), st.integers(0, 4)), min_size=1, max_size=6
    ),
    st.sampled_from(ALL_METHODS),
    st.integers(0, 2**16),
)
def test_no_method_ever_returns_an_ineligible_peer(spec, method_options, seed):
    method, options = method_options
    group = peers(*(w for w, _, _ in spec))
    for peer, (_, _, active) in zip(group, spec, strict=True):
        peer.active = active
        peer.header_time = peer.response_time = 10.0 * (active + 1)
    usable = {p.name for p, (_, ok, _) in zip(group, spec, strict=True) if ok}
    balancer = make_balancer(method, rng=np.random.default_rng(seed), **options)
    for i in range(20):
        chosen = balancer.select(group, lambda p: p.name in usable, f"10.0.{i}.{seed % 256}", 0.0)
        if usable:
            assert chosen is not None and chosen.name in usable
        else:
            assert chosen is None
