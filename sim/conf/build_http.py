"""The ``http{}`` block: what it declares, and the check across its servers.

Each directive goes to the builder of its context (zones, upstreams, servers and locations);
the http-level body buffer size is read here (keepalive and the other client settings inherit
inwards, :meth:`_ServerBuilder.client_directive`). The servers are built once the
whole block is read, when every upstream and zone they may name is known, and then no two may
claim to be the default server of one address.
"""

from __future__ import annotations

from sim.conf.build_server import _ServerBuilder
from sim.conf.config import ConfigError, HttpConf, HttpServerConf
from sim.conf.directives import _join, _Proto, _RawServer, _Scope, _size_arg, _Stmt


class _HttpBuilder(_ServerBuilder):
    """The http{} block."""

    def http(self, st: _Stmt) -> HttpConf:
        p = _Proto("http")
        scope = _Scope()
        servers: list[_RawServer] = []
        for c in st.block or ():
            d = c.directive
            if self.http_common(c, scope, p):
                continue
            if d == "upstream":
                self.upstream(c, p, scope)
            elif d == "server":
                servers.append(self.http_server(c, scope, p))
            elif d == "proxy_cache_path":
                self.cache_path(c, p)
            elif d == "keyval_zone":
                self.keyval_zone(c, p)
            elif d == "keyval":
                self.keyval(c, p)
            elif d == "limit_req_zone":
                self.limit_req_zone(c, p)
            elif d == "limit_conn_zone":
                self.limit_conn_zone(c, p)
            elif d == "match":
                self.match(c, p)
            elif d == "client_body_buffer_size":
                scope.set(c, _size_arg(c))
            else:
                self.skip(c)
        self.finish(p)
        built = tuple(self.build_http_server(s, p) for s in servers)
        self.check_default_servers(built)
        return HttpConf(
            upstreams=p.upstreams,
            servers=built,
            cache_paths=p.cache_paths,
            keyval_zones=p.keyval_zones,
            keyvals=tuple(p.keyvals),
            limit_req_zones=p.limit_req_zones,
            limit_conn_zones=p.limit_conn_zones,
            matches=p.matches,
            resolvers=self.resolvers(p),
            keepalive_timeout_ms=scope.get("keepalive_timeout", 75_000),
            keepalive_requests=scope.get("keepalive_requests", 1000),
            client_body_buffer_size=scope.get("client_body_buffer_size", 16_384),
        )

    def check_default_servers(self, servers: tuple[HttpServerConf, ...]) -> None:
        seen: set[tuple[str | None, int]] = set()
        for server in servers:
            for listen in server.listens:
                if listen.default_server:
                    key = (listen.address, listen.port)
                    if key in seen:
                        shown = _join(listen.address or "0.0.0.0", listen.port)
                        raise ConfigError(f"a duplicate default server for {shown}", listen.where)
                    seen.add(key)
