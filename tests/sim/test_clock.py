"""Unit conversions: nginx durations and sizes, ISO timestamps, node clocks."""

import pytest
import simpy

from sim.core.clock import NodeClock, UnitError, format_seconds, iso_ms, iso_s, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "ms"),
    [("10s", 10_000), ("500ms", 500), ("1m30s", 90_000), ("1m 30s", 90_000), ("2h", 7_200_000),
     ("1d", 86_400_000), ("30", 30_000), (5, 5000), ("0", 0), ("1y", 31_536_000_000)],
)
def test_parse_duration_accepts_nginx_time_values(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "1s1m", "1m1m", "10 s s", True])
def test_parse_duration_rejects_what_nginx_rejects(text):
    with pytest.raises(UnitError):
        parse_duration(text)


def test_bare_number_uses_the_default_unit():
    assert parse_duration("250", default_unit="ms") == 250


@pytest.mark.parametrize(("text", "n"), [("64k", 65_536), ("10m", 10_485_760), ("1g", 1 << 30), ("4096", 4096), ("8K", 8192)])
def test_parse_size_accepts_nginx_sizes(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "10kb", "1t", "-1", "1.5m"])
def test_parse_size_rejects_bad_sizes(text):
    with pytest.raises(UnitError):
        parse_size(text)


def test_format_seconds_echoes_whole_seconds_like_the_api():
    assert format_seconds(10_000) == "10s"
    assert format_seconds(60_000) == "60s"
    assert format_seconds(500) == "0s"


def test_iso_ms_has_millisecond_resolution_in_utc():
    assert iso_ms(1_538_989_548_776) == "2018-10-08T09:05:48.776Z"
    assert iso_s(1_538_989_548_776) == "2018-10-08T09:05:48Z"


def test_node_clock_adds_epoch_sim_time_and_offset():
    env = simpy.Environment()
    clock = NodeClock(env, epoch_ms=1_000_000, offset_ms=250)
    env.run(until=1500)
    assert clock.now_ms() == 1_001_750
    assert clock.iso_at(0) == iso_ms(1_000_250)
