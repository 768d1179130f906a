"""What nginx writes on the wire for a status: its status lines and its own HTML error pages.

nginx knows a reason phrase for a fixed set of codes (``ngx_http_header_filter_module``) and
sends a code it has none for as ``HTTP/1.1 422 `` (the code and a space). Its error pages name
the status twice and end with an ``nginx`` line; an error it reports under another status (494,
a request header too large, goes out as 400) carries its own title and a second line.
"""

from __future__ import annotations

import time
from email.utils import formatdate

SERVER_HEADER = "nginx"

#: nginx's reason phrases, by status; a code absent here is sent without one.
REASONS = {
    100: "Continue", 101: "Switching Protocols",
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Time-out", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Large",
    415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable", 421: "Misdirected Request",
    429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}  # fmt: skip

#: nginx's own codes for errors it reports to the client as 400, with their page's second line.
SPECIAL_400 = {
    494: "Request Header Or Cookie Too Large",
    495: "The SSL certificate error",
    496: "No required SSL certificate was sent",
    497: "The plain HTTP request was sent to HTTPS port",
}

#: The statuses after which nginx does not keep the connection (``ngx_http_special_response_handler``).
CLOSES = frozenset({400, 413, 414, 494, 495, 496, 497, 500, 501})


def reason(status: int) -> str:
    """The reason phrase nginx sends with ``status`` ("" when it has none)."""
    return REASONS.get(status, "")


def wire_status(status: int) -> int:
    """The status a client sees: nginx's private 49x codes are sent as 400."""
    return 400 if status in SPECIAL_400 else status


def status_line(status: int) -> bytes:
    status = wire_status(status)
    return f"HTTP/1.1 {status} {reason(status)}\r\n".encode("latin-1")


def error_page(status: int) -> bytes:
    """nginx's HTML page for an error ``status`` (``server_tokens off``: the last line says ``nginx``)."""
    extra = SPECIAL_400.get(status)
    if extra is not None:
        title, heading = f"400 {extra}", "400 Bad Request"
        middle = f"<center><h1>{heading}</h1></center>\r\n<center>{extra}</center>\r\n"
    else:
        title = f"{status} {reason(status)}".rstrip()
        middle = f"<center><h1>{title}</h1></center>\r\n"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n{middle}"
            f"<hr><center>{SERVER_HEADER}</center>\r\n</body>\r\n</html>\r\n").encode("latin-1")


_DATE = [0, ""]


def http_date() -> str:
    """The ``Date`` header, formatted once per second."""
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, formatdate(now, usegmt=True)
    return _DATE[1]
