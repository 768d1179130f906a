"""The ``stream{}`` block, its ``server{}`` blocks and ``zone_sync``.

The stream directives that inherit into servers (proxy timeouts, ``limit_conn``, ``resolver``,
the zone_sync buffers and timers), a server's ``listen`` and its handler (``proxy_pass``,
``return`` or ``zone_sync``), the ``zone_sync_server`` addresses, and the frozen
:class:`StreamServerConf` and :class:`ZoneSyncConf` built from them.
"""

from __future__ import annotations

from sim.conf.build_upstream import _UpstreamBuilder
from sim.conf.build_zones import _ZonesBuilder
from sim.conf.config import ConfigError, StreamConf, StreamServerConf, ZoneSyncConf, ZoneSyncServerConf
from sim.conf.directives import (
    _flag_arg,
    _host_port,
    _invalid,
    _num_arg,
    _parse_int,
    _parse_size,
    _port,
    _Proto,
    _RawServer,
    _Scope,
    _size_arg,
    _Stmt,
    _time_arg,
    _valid_host,
)

_STREAM_TIMES = (
    "proxy_connect_timeout", "proxy_timeout", "proxy_next_upstream_timeout", "health_check_timeout",
    "zone_sync_interval", "zone_sync_connect_retry_interval", "zone_sync_connect_timeout",
    "zone_sync_timeout",
)  # fmt: skip
#: Stream directives that give a server something to do with a connection.
_STREAM_HANDLERS = ("proxy_pass", "return", "zone_sync", "pass")


class _StreamBuilder(_ZonesBuilder, _UpstreamBuilder):
    """The stream{} block and its servers."""

    def stream(self, st: _Stmt) -> StreamConf:
        p = _Proto("stream")
        scope = _Scope()
        servers: list[_RawServer] = []
        for c in st.block or ():
            d = c.directive
            if self.stream_common(c, scope, p):
                continue
            if d == "upstream":
                self.upstream(c, p, scope)
            elif d == "server":
                servers.append(self.stream_server(c, scope, p))
            elif d == "keyval_zone":
                self.keyval_zone(c, p)
            elif d == "keyval":
                self.keyval(c, p)
            elif d == "limit_conn_zone":
                self.limit_conn_zone(c, p)
            elif d == "match":
                self.match(c, p)
            else:
                self.skip(c)
        self.finish(p)
        return StreamConf(
            upstreams=p.upstreams,
            servers=tuple(self.build_stream_server(s, p) for s in servers),
            keyval_zones=p.keyval_zones,
            keyvals=tuple(p.keyvals),
            limit_conn_zones=p.limit_conn_zones,
            matches=p.matches,
            resolvers=self.resolvers(p),
        )

    def stream_common(self, c: _Stmt, scope: _Scope, p: _Proto) -> bool:
        """Directives of stream and its servers that inherit inwards; False if not one."""
        d = c.directive
        if d in _STREAM_TIMES:
            scope.set(c, _time_arg(c))
        elif d == "proxy_next_upstream":
            scope.set(c, _flag_arg(c))
        elif d == "proxy_next_upstream_tries":
            scope.set(c, _num_arg(c))
        elif d == "limit_conn":
            self.add_limit_conn(c, scope, p)
        elif d == "limit_conn_dry_run":
            scope.set(c, _flag_arg(c))
        elif d in ("resolver", "resolver_timeout"):
            self.resolver_directive(c, scope, p)
        elif d == "zone_sync_buffers":
            n, size = _parse_int(c.args[0]), _parse_size(c.args[1])
            if not n or not size:
                raise ConfigError('"zone_sync_buffers" directive invalid value', c.where)
            scope.set(c, (n, size))
        elif d == "zone_sync_recv_buffer_size":
            scope.set(c, _size_arg(c))
        elif d == "zone_sync_ssl":
            scope.set(c, _flag_arg(c))
        else:
            return False
        return True

    def stream_server(self, st: _Stmt, outer: _Scope, p: _Proto) -> _RawServer:
        raw = _RawServer(scope=_Scope(outer), where=st.where)
        for c in st.block or ():
            d = c.directive
            if d in _STREAM_HANDLERS:
                raw.handlers.add(d)
            if self.stream_common(c, raw.scope, p):
                continue
            if d == "listen":
                raw.listens.append(self.listen(c, "stream"))
            elif d == "proxy_pass":
                if raw.proxy_pass is not None:
                    raise ConfigError('"proxy_pass" directive is duplicate', c.where)
                raw.proxy_pass = c
            elif d == "status_zone":
                raw.scope.set(c, c.args[0])
            elif d == "return":
                raw.return_text = c.args[0]
            elif d == "health_check":
                raw.health_checks.append((self.health_check(c, p), c))
            elif d == "zone_sync":
                if self.zone_sync_where is not None:
                    raise ConfigError('"zone_sync" directive is duplicate', c.where)
                self.zone_sync_where = c.where
                raw.zone_sync = c
            elif d == "zone_sync_server":
                raw.zone_sync_servers.append(self.zone_sync_server(c, raw.scope, p))
            else:
                self.skip(c)
        if not raw.listens:
            raise ConfigError('no "listen" is defined for server', st.where)
        if not raw.handlers:
            raise ConfigError("no handler for server", st.where)
        return raw

    def zone_sync_server(self, c: _Stmt, scope: _Scope, p: _Proto) -> ZoneSyncServerConf:
        text = c.args[0]
        if len(c.args) > 1 and c.args[1] != "resolve":
            raise _invalid(c, c.args[1])
        resolve = len(c.args) > 1
        if resolve:
            p.resolve_checks.append((scope, c.where))
        if text.startswith("unix:"):
            return ZoneSyncServerConf(host=text, port=0, resolve=resolve, where=c.where)
        hp = _host_port(text)
        if hp is None or not hp[0] or not _valid_host(hp[0]):
            raise ConfigError(f'invalid host in "{text}" of the "zone_sync_server" directive', c.where)
        if hp[1] is None:
            raise ConfigError(f'no port in "{text}" of the "zone_sync_server" directive', c.where)
        port = _port(hp[1])
        if port is None:
            raise ConfigError(f'invalid port in "{text}" of the "zone_sync_server" directive', c.where)
        return ZoneSyncServerConf(host=hp[0], port=port, resolve=resolve, where=c.where)

    def build_stream_server(self, raw: _RawServer, p: _Proto) -> StreamServerConf:
        s = raw.scope
        upstream = address = None
        if raw.proxy_pass is not None:
            text = raw.proxy_pass.args[0]
            if text.startswith("unix:"):
                address = text
            elif "$" not in text:
                upstream, address = self.proxy_target(raw.proxy_pass, text, p, None)
        for _, st in raw.health_checks:
            self.check_health_check_target(st, upstream, p)
        return StreamServerConf(
            listens=tuple(raw.listens),
            proxy_pass=raw.proxy_pass.args[0] if raw.proxy_pass else None,
            upstream=upstream,
            proxy_pass_address=address,
            status_zone=s.values.get("status_zone"),
            proxy_connect_timeout_ms=s.get("proxy_connect_timeout", 60_000),
            proxy_timeout_ms=s.get("proxy_timeout", 600_000),
            proxy_next_upstream=s.get("proxy_next_upstream", True),
            proxy_next_upstream_tries=s.get("proxy_next_upstream_tries", 0),
            proxy_next_upstream_timeout_ms=s.get("proxy_next_upstream_timeout", 0),
            health_checks=tuple(hc for hc, _ in raw.health_checks),
            health_check_timeout_ms=s.get("health_check_timeout", 5000),
            zone_sync=self.build_zone_sync(raw),
            limit_conn=self.limits(s, "limit_conn"),
            return_text=raw.return_text,
            ssl=any(listen.ssl for listen in raw.listens),
            where=raw.where,
        )

    def build_zone_sync(self, raw: _RawServer) -> ZoneSyncConf | None:
        if raw.zone_sync is None:
            if raw.zone_sync_servers:
                raise ConfigError('"zone_sync_server" requires "zone_sync"', raw.zone_sync_servers[0].where)
            return None
        if not raw.zone_sync_servers:
            raise ConfigError('no "zone_sync_server" is defined for "zone_sync"', raw.zone_sync.where)
        s = raw.scope
        number, size = s.get("zone_sync_buffers", (8, 4096))
        recv = s.get("zone_sync_recv_buffer_size")
        if recv is None:
            recv = max(4096, size)
        elif recv < size:
            raise ConfigError(
                '"zone_sync_recv_buffer_size" is smaller than a "zone_sync_buffers" buffer',
                raw.zone_sync.where,
            )
        return ZoneSyncConf(
            servers=tuple(raw.zone_sync_servers),
            interval_ms=s.get("zone_sync_interval", 1000),
            buffers_number=number,
            buffers_size=size,
            recv_buffer_size=recv,
            connect_retry_interval_ms=s.get("zone_sync_connect_retry_interval", 1000),
            connect_timeout_ms=s.get("zone_sync_connect_timeout", 5000),
            timeout_ms=s.get("zone_sync_timeout", 5000),
            ssl=s.get("zone_sync_ssl", False),
            where=raw.zone_sync.where,
        )
