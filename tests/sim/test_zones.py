"""Status zones (sim/zones/status.py): the per-class and per-code counts, kept in native fields, read
back as the API's lists and dicts."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.zones.status import LocationZone, ServerZone

statuses = st.sampled_from([100, 200, 200, 200, 204, 301, 304, 404, 404, 499, 500, 502, 503])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(statuses, st.integers(0, 10_000)), max_size=60), st.booleans())
def test_counts_read_back_as_a_plain_count_of_the_statuses(answers, server):
    zone = ServerZone("z") if server else LocationZone("z")
    for status, nbytes in answers:
        zone.respond(status, nbytes)
    by_code = Counter(s for s, _ in answers)
    assert zone.codes == dict(by_code)
    assert zone.responses == [sum(n for s, n in by_code.items() if s // 100 == c) for c in range(1, 6)]
    assert zone.responses_total == len(answers) == sum(zone.codes.values())
    assert zone.sent == sum(n for _, n in answers)
    zone.reset_statistics()
    assert (zone.codes, zone.responses, zone.sent) == ({}, [0] * 5, 0)


def test_the_codes_dict_is_a_copy_and_a_status_outside_http_is_refused():
    zone = LocationZone("z")
    zone.respond(404, 10)
    codes = zone.codes
    codes[404] = 99
    assert zone.codes == {404: 1}
    with pytest.raises(ValueError, match="not an HTTP status"):
        zone.respond(600, 1)
    assert zone.responses == [0, 0, 0, 1, 0] and zone.sent == 10
