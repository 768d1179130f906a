"""The few nginx variables the model evaluates for a request, as ``ngx_http_variables.c`` would.

:func:`expand` fills a key template (``limit_req_zone``/``limit_conn_zone`` keys, ``hash`` keys of
upstreams) with ``$request_uri``, ``$remote_addr`` and the like; :func:`cache_vars` gives the
named values a ``proxy_cache_key``, ``proxy_cache_bypass`` or ``proxy_no_cache`` refers to. Both
add the request's own variables (``req.vars``) on top. They run on the request path.
"""

from __future__ import annotations

from sim.http.traffic import Request


def cache_vars(req: Request) -> dict[str, str]:
    """The variables of a cache key or a bypass condition, by name without the ``$``."""
    path, _, args = req.uri.partition("?")
    v = {
        "scheme": "http",
        "proxy_host": req.upstream.name,
        "request_uri": req.uri,
        "uri": path,
        "args": args,
        "host": req.host,
        "http_host": req.host,
        "remote_addr": req.client_ip,
    }
    if args:
        for part in args.split("&"):
            k, _, val = part.partition("=")
            v["arg_" + k] = val
    if req.vars:
        for k, val in req.vars.items():
            v[k.lstrip("$")] = val
    return v


def expand(template: str, req: Request) -> str:
    """Evaluate the few nginx variables the model knows in a key template."""
    if "$" not in template:
        return template
    path, _, args = req.uri.partition("?")
    values = {
        "$request_uri": req.uri,
        "$uri": path,
        "$args": args,
        "$remote_addr": req.client_ip,
        "$binary_remote_addr": req.client_ip,
        "$host": req.host,
        "$http_host": req.host,
        "$scheme": "http",
        "$proxy_host": req.upstream.name if req.upstream is not None else "",
        "$server_name": req.host,
    }
    if req.vars:
        values.update(req.vars)
    out = template
    for name in sorted(values, key=len, reverse=True):
        if name in out:
            out = out.replace(name, values[name])
    return out
