"""Server objects as the API's ``.../upstreams/{name}/servers/`` endpoints take them.

nginx's checks on the body of a POST or PATCH (which fields an http or stream upstream
accepts, their types and ranges, the errors it answers with) and on the ``server`` address,
as pure functions of the body and the upstream's kind. :class:`sim.upstream.upstream.Upstream`
applies what they return to its peers.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from sim.core import errors
from sim.core.clock import UnitError, parse_duration

#: Largest values accepted for integer server parameters through the API (nginx stores them
#: in ngx_uint_t fields but rejects absurd values; see docs/decisions.md).
MAX_WEIGHT = 1_000_000
MAX_INT = 2**31 - 1
MAX_TIME_MS = 2**31 - 1


def server_fields(kind: str) -> set[str]:
    """The fields a server object may carry in an upstream of ``kind`` (``http`` or ``stream``)."""
    common = {"server", "service", "weight", "max_conns", "max_fails", "fail_timeout", "slow_start", "backup", "down"}
    if kind == "http":
        common |= {"route", "drain"}
    return common


def validate_server(body: Any, kind: str, *, creating: bool) -> dict:
    """Check a server object from the API; returns normalised values, raising nginx's errors."""
    if not isinstance(body, dict):
        raise errors.UpstreamConfFormatError("nested object or list")
    allowed = server_fields(kind) | {"id"}
    out: dict = {}
    for key, value in body.items():
        if key not in allowed:
            raise errors.UpstreamConfFormatError(f'unknown parameter "{key}"')
        if isinstance(value, dict | list):
            raise errors.UpstreamConfFormatError("nested object or list")
    if "id" in body:
        if creating:
            raise errors.UpstreamConfFormatError('unknown parameter "id"')
    for key in ("weight", "max_conns", "max_fails"):
        if key in body:
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
            limit = MAX_WEIGHT if key == "weight" else MAX_INT
            low = 1 if key == "weight" else 0
            if v < low or v > limit:
                exc = {
                    "weight": errors.UpstreamBadWeight,
                    "max_conns": errors.UpstreamBadMaxConns,
                    "max_fails": errors.UpstreamBadMaxFails,
                }[key]
                raise exc(f'invalid "{key}"')
            out[key] = v
    for key, exc in (("fail_timeout", errors.UpstreamBadFailTimeout), ("slow_start", errors.UpstreamBadSlowStart)):
        if key in body:
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
            try:
                ms = parse_duration(v)
            except UnitError:
                raise exc(f'invalid "{key}"') from None
            if ms > MAX_TIME_MS:
                raise exc(f'invalid "{key}"')
            out[key] = ms
    for key in ("backup", "down", "drain"):
        if key in body:
            v = body[key]
            if not isinstance(v, bool):
                raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
            out[key] = v
    if "route" in body:
        v = body["route"]
        if not isinstance(v, str):
            raise errors.UpstreamConfFormatError('invalid "route" value')
        if len(v) > 32:
            raise errors.UpstreamBadRoute("route is too long")
        out["route"] = v
    if "service" in body:
        v = body["service"]
        if not isinstance(v, str):
            raise errors.UpstreamConfFormatError('invalid "service" value')
        if not v:
            raise errors.UpstreamBadService('"service" is empty')
        out["service"] = v
    if "server" in body:
        v = body["server"]
        if not isinstance(v, str):
            raise errors.UpstreamConfFormatError('invalid "server" value')
        out["server"] = v
    return out


def parse_address(text: str, service: str | None, kind: str) -> tuple[str, str, int | None, bool]:
    """(address as shown, host, port, is_name) for a server given through the API."""
    if not text or any(c.isspace() for c in text):
        raise errors.UpstreamBadAddress(f'invalid address "{text}"')
    if text.startswith("unix:"):
        if kind == "stream" and len(text) <= 5:
            raise errors.UpstreamBadAddress(f'invalid address "{text}"')
        return text, text, None, False
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text)
    if m:
        host, port_s = m.group(1), m.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise errors.UpstreamBadAddress(f'invalid address "{text}"') from None
        host_txt = f"[{host}]"
    else:
        host, _, port_s = text.partition(":")
        port_s = port_s or None
        host_txt = host
        if not re.fullmatch(r"[A-Za-z0-9._-]+", host) or host.startswith((".", "-")):
            raise errors.UpstreamBadAddress(f'invalid address "{text}"')
    if port_s is not None and (not port_s.isdigit() or not 0 < int(port_s) < 65536):
        raise errors.UpstreamBadAddress(f'invalid port in "{text}"')
    is_name = True
    try:
        ipaddress.ip_address(host)
        is_name = False
    except ValueError:
        pass
    if service is not None:
        if port_s is not None:
            raise errors.UpstreamBadAddress(f'service upstream "{text}" may not have port')
        if not is_name:
            raise errors.UpstreamBadAddress(f'service upstream "{text}" requires domain name')
        return host_txt, host, None, True
    if port_s is None:
        if kind == "stream":
            raise errors.UpstreamBadAddress(f'no port in server "{text}"')
        port_s = "80"
    return f"{host_txt}:{port_s}", host, int(port_s), is_name
