import pytest

from sim.conf.config import ResolverConf
from sim.zones.resolver import DEFAULT_TTL_MS, Resolver, ResolverZone

HOSTS = {
    "backend.example": ["10.0.0.1", "10.0.0.2"],
    "v6.example": ["10.0.0.3", "fd00::3"],
    "_http._tcp.backend.example": ["b1.example:8080", "b2.example:8081"],
    "slow.example": "timeout",
    "broken.example": ["servfail"],
    "empty.example": [],
}


def make(valid_ms=None, ipv6=True, hosts=HOSTS):
    zone = ResolverZone("dns")
    conf = ResolverConf(addresses=("10.0.0.53",), valid_ms=valid_ms, status_zone="dns", ipv6=ipv6)
    return Resolver(conf, dict(hosts), zone), zone


def nonzero(counts):
    return {k: v for k, v in counts.items() if v}


def test_a_name_lookup_counts_one_name_request_and_one_noerror_response():
    resolver, zone = make()
    assert resolver.resolve("backend.example", 0.0) == ["10.0.0.1", "10.0.0.2"]
    assert zone.requests == {"name": 1, "srv": 0, "addr": 0}
    assert nonzero(zone.responses) == {"noerror": 1}


def test_answers_are_cached_for_the_ttl_and_cached_lookups_count_nothing():
    resolver, zone = make()
    resolver.resolve("backend.example", 0.0)
    resolver.resolve("backend.example", DEFAULT_TTL_MS - 1)
    assert zone.requests["name"] == 1
    resolver.resolve("backend.example", DEFAULT_TTL_MS)
    assert zone.requests["name"] == 2
    assert zone.responses["noerror"] == 2


def test_valid_overrides_the_ttl():
    resolver, zone = make(valid_ms=5000)
    answer = resolver.query("backend.example", 1000.0)
    assert answer.valid_until_ms == 6000.0
    assert resolver.query("backend.example", 5999.0).cached
    assert not resolver.query("backend.example", 6000.0).cached
    assert zone.requests["name"] == 2


def test_a_name_missing_from_the_map_is_nxdomain_and_not_cached():
    resolver, zone = make()
    assert resolver.resolve("nowhere.example", 0.0) is None
    assert resolver.resolve("nowhere.example", 1.0) is None
    assert zone.requests["name"] == 2
    assert nonzero(zone.responses) == {"nxdomain": 2}
    assert resolver.query("nowhere.example", 100.0).valid_until_ms == 10_100.0


def test_a_timeout_answer_counts_timedout_after_the_resolver_timeout():
    resolver, zone = make()
    answer = resolver.query("slow.example", 0.0)
    assert (answer.rcode, answer.addrs, answer.delay_ms) == ("timedout", (), 30_000.0)
    assert answer.valid_until_ms == 40_000.0
    assert nonzero(zone.responses) == {"timedout": 1}


def test_servfail_and_empty_answers_fail_the_lookup():
    resolver, zone = make()
    assert resolver.resolve("broken.example", 0.0) is None
    assert resolver.resolve("empty.example", 0.0) is None
    assert nonzero(zone.responses) == {"servfail": 1, "noerror": 1}


def test_srv_lookups_count_under_srv_and_return_targets_with_ports():
    resolver, zone = make()
    assert resolver.resolve("_http._tcp.backend.example", 0.0, qtype="SRV") == [
        "b1.example:8080",
        "b2.example:8081",
    ]
    assert zone.requests == {"name": 0, "srv": 1, "addr": 0}


def test_a_srv_answer_and_a_name_answer_are_cached_apart():
    resolver, zone = make()
    resolver.resolve("_http._tcp.backend.example", 0.0, qtype="SRV")
    resolver.resolve("_http._tcp.backend.example", 1.0, qtype="A")  # the map does not tell types apart
    resolver.resolve("_http._tcp.backend.example", 2.0, qtype="SRV")
    assert zone.requests == {"name": 1, "srv": 1, "addr": 0}


def test_set_answer_takes_effect_once_the_cached_answer_expires():
    resolver, zone = make()
    resolver.resolve("backend.example", 0.0)
    resolver.set_answer("backend.example", ["10.0.0.9"])
    assert resolver.resolve("backend.example", 1000.0) == ["10.0.0.1", "10.0.0.2"]
    assert resolver.resolve("backend.example", DEFAULT_TTL_MS) == ["10.0.0.9"]
    resolver.set_answer("backend.example", "servfail")
    assert resolver.resolve("backend.example", 2 * DEFAULT_TTL_MS) is None
    assert nonzero(zone.responses) == {"noerror": 2, "servfail": 1}


def test_names_match_without_case_or_trailing_dot():
    resolver, _zone = make()
    assert resolver.resolve("Backend.Example.", 0.0) == ["10.0.0.1", "10.0.0.2"]


def test_ipv6_off_drops_ipv6_addresses():
    resolver, _zone = make(ipv6=False)
    assert resolver.resolve("v6.example", 0.0) == ["10.0.0.3"]
    resolver6, _zone6 = make(ipv6=True)
    assert resolver6.resolve("v6.example", 0.0) == ["10.0.0.3", "fd00::3"]


def test_reverse_lookups_count_under_addr():
    resolver, zone = make(hosts={"10.0.0.1": ["backend.example"]})
    assert resolver.resolve("10.0.0.1", 0.0, qtype="PTR") == ["backend.example"]
    assert zone.requests == {"name": 0, "srv": 0, "addr": 1}


def test_reset_statistics_zeroes_requests_and_responses_but_keeps_the_cache():
    resolver, zone = make()
    resolver.resolve("backend.example", 0.0)
    zone.reset_statistics()
    assert sum(zone.requests.values()) == sum(zone.responses.values()) == 0
    resolver.resolve("backend.example", 1.0)
    assert zone.requests["name"] == 0


def test_a_resolver_without_a_status_zone_still_answers():
    conf = ResolverConf(addresses=("10.0.0.53",))
    resolver = Resolver(conf, {"a.example": ["10.0.0.1"]}, None)
    assert resolver.resolve("a.example", 0.0) == ["10.0.0.1"]


def test_unknown_answer_words_and_query_types_are_refused():
    with pytest.raises(ValueError):
        make(hosts={"a.example": "maybe"})
    resolver, _zone = make()
    with pytest.raises(ValueError):
        resolver.resolve("backend.example", 0.0, qtype="MX")
