"""The pieces of nginx's request rules that need no socket: the header buffers' arithmetic, the
URI as locations see it, the Host check, the error pages and status lines."""

from __future__ import annotations

import pytest

from api.live.pages import error_page, status_line
from api.live.rules import HeadBudget, HeadTooLarge, normalize_path, valid_host
from sim.conf.config import ClientConf


def budget(first=1024, number=4, size=8192) -> HeadBudget:
    return HeadBudget(ClientConf(header_buffer_size=first, large_header_buffers=(number, size)))


def test_a_head_within_the_first_buffer_ends_after_its_empty_line():
    head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert budget().feed(head + b"GET /next") == len(head)


def test_a_head_may_arrive_a_byte_at_a_time_and_leading_empty_lines_are_skipped():
    b = budget()
    data = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    ends = [b.feed(data[i : i + 1]) for i in range(len(data))]
    assert ends[:-1] == [-1] * (len(data) - 1) and ends[-1] == 1


def test_a_request_line_longer_than_a_large_buffer_is_414_and_a_header_line_494():
    with pytest.raises(HeadTooLarge) as e:
        budget(size=100).feed(b"GET /" + b"u" * 2000)
    assert e.value.status == 414
    with pytest.raises(HeadTooLarge) as e:
        budget(size=100).feed(b"GET / HTTP/1.1\r\nCookie: " + b"c" * 2000)
    assert e.value.status == 494


def test_a_line_that_exactly_fills_a_large_buffer_fits():
    # first buffer 10 bytes: "GET /xx HT" fills it, the line moves to a 20-byte buffer
    line = b"GET /xxxxx HTTP/1.1\n"  # 20 bytes with its newline
    b = budget(first=10, number=1, size=20)
    assert b.feed(line) == -1
    with pytest.raises(HeadTooLarge):
        budget(first=10, number=1, size=19).feed(line)


def test_each_new_buffer_counts_against_the_number():
    b = budget(first=16, number=2, size=16)
    # the request line fills the first buffer; each 14-byte header line then takes a large
    # buffer of its own (the part read so far moves with it), and the third finds none left
    with pytest.raises(HeadTooLarge) as e:
        b.feed(b"GET / HTTP/1.1\r\n" + b"X-a: 1234567\r\n" * 4 + b"\r\n")
    assert e.value.status == 494


def test_budget_reset_starts_the_next_request_in_a_small_buffer_again():
    b = budget(first=32, number=1, size=64)
    assert b.feed(b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 30 + b"\r\n\r\n") > 0
    b.reset()
    assert b.busy == 0 and b.cap == 32


@pytest.mark.parametrize("raw, merge, expected", [
    ("/", True, ("/", None)),
    ("/a/b?x=1#f", True, ("/a/b", "x=1")),
    ("/a/./b/../c", True, ("/a/c", None)),
    ("/a//b///c", True, ("/a/b/c", None)),
    ("/a//b", False, ("/a//b", None)),
    ("/%61%2Fb", True, ("/a/b", None)),
    ("/a/%2e%2e/b", True, ("/b", None)),
    ("/a/%2e/", True, ("/a/", None)),
    ("/a/.", True, ("/a/", None)),
    ("/a/..", True, ("/", None)),
    ("/a%3Fb", True, ("/a?b", None)),
    ("/a%23b", True, ("/a#b", None)),
    ("/a%25b", True, ("/a%b", None)),
    ("/.hidden/..x/...", True, ("/.hidden/..x/...", None)),
    ("/a/b/../../c", True, ("/c", None)),
    ("/..", True, None),
    ("/a/../..", True, None),
    ("/api/../../etc/passwd", True, None),
    ("/%2e%2e", True, None),
    ("/a%0", True, None),
    ("/a%g0", True, None),
    ("/a%00", True, None),
])  # fmt: skip
def test_normalize_path_as_nginx_matches_locations(raw, merge, expected):
    assert normalize_path(raw, merge) == expected


@pytest.mark.parametrize("value, expected", [
    ("Example.COM", "example.com"), ("example.com.", "example.com"), ("a.b:8080", "a.b"),
    ("[::1]:80", "[::1]"), ("a..b", None), ("a/b", None), ("", None), ("a b", None), ("a:x", None),
])  # fmt: skip
def test_valid_host(value, expected):
    assert valid_host(value) == expected


def test_error_pages_and_status_lines_are_nginx_s():
    assert status_line(494) == b"HTTP/1.1 400 Bad Request\r\n"
    assert status_line(302) == b"HTTP/1.1 302 Moved Temporarily\r\n"
    assert status_line(422) == b"HTTP/1.1 422 \r\n"
    page = error_page(503)
    assert page == (b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
                    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
                    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    assert b"<center>Request Header Or Cookie Too Large</center>" in error_page(494)


def test_the_client_settings_are_read_from_nginx_conf_and_inherited_inwards():
    from sim.conf.config import ConfigError
    from sim.conf.reader import loads

    conf = loads("""http {
        client_max_body_size 2m; keepalive_timeout 10s 5; large_client_header_buffers 2 1k;
        server { listen 80; merge_slashes off; client_header_timeout 3s;
                 location / { client_max_body_size 0; keepalive_requests 5; }
                 location /a { } }
        server { listen 81; } }""")
    first, second = conf.http.servers
    assert first.client == ClientConf(header_timeout_ms=3000, max_body_size=2 << 20, keepalive_timeout_ms=10_000,
                                      keepalive_header_s=5, large_header_buffers=(2, 1024), merge_slashes=False)
    assert (first.locations[0].client.max_body_size, first.locations[0].client.keepalive_requests) == (0, 5)
    assert first.locations[1].client == first.client
    assert second.client.header_timeout_ms == 60_000 and second.client.merge_slashes
    assert conf.http.keepalive_timeout_ms == 10_000
    for bad, message in (("large_client_header_buffers 0 1k;", 'invalid value "0"'),
                         ("client_max_body_size 1q;", "invalid value"),
                         ("keepalive_timeout 5s 10ms;", 'invalid value "10ms"')):
        with pytest.raises(ConfigError, match=message):
            loads("http { " + bad + " }")
    with pytest.raises(ConfigError, match="not allowed here"):
        loads("http { server { location / { client_header_buffer_size 1k; } } }")
