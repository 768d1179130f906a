"""Shared memory zones declared in ``http`` and ``stream``, and the limits that use them.

``proxy_cache_path``, ``keyval_zone`` and ``keyval``, ``limit_req_zone`` and ``limit_conn_zone``;
then ``limit_req`` and ``limit_conn``, which name a zone and inherit inwards with their own
``_status`` and ``_dry_run``. Zone names are checked against the declarations when the block ends.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from sim.conf.config import (
    CachePathConf,
    ConfigError,
    KeyvalConf,
    KeyvalZoneConf,
    LimitConnConf,
    LimitConnZoneConf,
    LimitReqConf,
    LimitReqZoneConf,
)
from sim.conf.directives import (
    _BuilderBase,
    _invalid,
    _parse_int,
    _parse_size,
    _parse_time,
    _Proto,
    _Scope,
    _Stmt,
    _zone_param,
)


class _ZonesBuilder(_BuilderBase):
    """proxy_cache_path, keyval, limit_req and limit_conn: the zones and the directives naming them."""

    def cache_path(self, c: _Stmt, p: _Proto) -> None:
        kw: dict[str, Any] = {}
        name = size = None
        for a in c.args[1:]:
            key, eq, value = a.partition("=")
            if not eq:
                raise _invalid(c, a)
            if key == "keys_zone":
                zname, sep, size_text = value.partition(":")
                size = _parse_size(size_text) if sep else None
                if not zname or not size:
                    raise ConfigError(f'invalid keys zone size "{a}"', c.where)
                name = zname
            elif key == "levels":
                parts = value.split(":")
                if not 1 <= len(parts) <= 3 or any(x not in ("1", "2") for x in parts):
                    raise ConfigError(f'invalid "levels" "{a}"', c.where)
                kw["levels"] = value
            elif key in ("inactive", "loader_sleep", "loader_threshold", "manager_sleep",
                         "manager_threshold", "purger_sleep", "purger_threshold"):  # fmt: skip
                ms = _parse_time(value, seconds=key == "inactive")
                if ms is None:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                if key != "inactive" and not key.startswith("purger"):
                    kw[f"{key}_ms"] = ms
                elif key == "inactive":
                    kw["inactive_ms"] = ms
            elif key in ("max_size", "min_free"):
                n = _parse_size(value)
                if n is None:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                if key == "max_size":
                    kw["max_size"] = n
            elif key in ("loader_files", "manager_files", "purger_files"):
                n = _parse_int(value)
                if not n:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                if key != "purger_files":
                    kw[key] = n
            elif key in ("use_temp_path", "purger"):
                if value not in ("on", "off"):
                    raise ConfigError(f'invalid {key} value "{a}", it must be "on" or "off"', c.where)
            else:
                raise _invalid(c, a)
        if name is None or size is None:
            raise ConfigError('"proxy_cache_path" must have "keys_zone" parameter', c.where)
        self.shm_zone(c, name, "proxy_cache")
        p.cache_paths[name] = CachePathConf(
            path=c.args[0], name=name, keys_zone_size=size, where=c.where, **kw
        )

    def keyval_zone(self, c: _Stmt, p: _Proto) -> None:
        kw: dict[str, Any] = {}
        name = size = None
        for a in c.args:
            key, eq, value = a.partition("=")
            if eq and key == "zone":
                name, size = _zone_param(c, a)
            elif eq and key == "state" and value:
                kw["state"] = value
            elif eq and key == "timeout" and _parse_time(value):
                kw["timeout_ms"] = _parse_time(value)
            elif eq and key == "type" and value in ("string", "ip", "prefix"):
                kw["type"] = value
            elif a == "sync":
                kw["sync"] = True
            else:
                raise _invalid(c, a)
        if name is None or size is None:
            raise ConfigError('"keyval_zone" must have "zone" parameter', c.where)
        if kw.get("sync") and "timeout_ms" not in kw:
            raise ConfigError('"keyval_zone" with "sync" requires "timeout"', c.where)
        self.shm_zone(c, name, f"{p.kind} keyval")
        p.keyval_zones[name] = KeyvalZoneConf(name=name, kind=p.kind, size=size, where=c.where, **kw)

    def keyval(self, c: _Stmt, p: _Proto) -> None:
        key, variable, zone = c.args
        if len(variable) < 2 or not variable.startswith("$"):
            raise ConfigError(f'invalid variable name "{variable}"', c.where)
        if not zone.startswith("zone=") or len(zone) == 5:
            raise _invalid(c, zone)
        p.keyvals.append(KeyvalConf(key=key, variable=variable, zone=zone[5:], where=c.where))
        p.refs.append(("keyval", zone[5:], c))

    def limit_req_zone(self, c: _Stmt, p: _Proto) -> None:
        name = size = None
        rate = 1.0  # nginx's default when rate= is left out
        sync = False
        for a in c.args[1:]:
            key, eq, value = a.partition("=")
            if eq and key == "zone":
                name, size = _zone_param(c, a)
            elif eq and key == "rate":
                m = re.fullmatch(r"(\d+)r/([sm])", value)
                if not m or int(m.group(1)) == 0:
                    raise ConfigError(f'invalid rate "{a}"', c.where)
                rate = int(m.group(1)) / (1 if m.group(2) == "s" else 60)
            elif a == "sync":
                sync = True
            else:
                raise _invalid(c, a)
        if name is None or size is None:
            raise ConfigError('"limit_req_zone" must have "zone" parameter', c.where)
        self.shm_zone(c, name, "limit_req")
        p.limit_req_zones[name] = LimitReqZoneConf(
            name=name, key=c.args[0], size=size, rate_per_s=rate, sync=sync, where=c.where
        )

    def limit_conn_zone(self, c: _Stmt, p: _Proto) -> None:
        key, zone = c.args
        if not zone.startswith("zone="):
            raise _invalid(c, zone)
        name, size = _zone_param(c, zone)
        self.shm_zone(c, name, f"{p.kind} limit_conn")
        p.limit_conn_zones[name] = LimitConnZoneConf(
            name=name, kind=p.kind, key=key, size=size, where=c.where
        )

    def limit_req(self, c: _Stmt) -> LimitReqConf:
        zone = None
        burst = delay = 0
        nodelay = False
        for a in c.args:
            key, eq, value = a.partition("=")
            if eq and key == "zone" and value:
                zone = value
            elif eq and key in ("burst", "delay"):
                n = _parse_int(value)
                if not n:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                burst, delay = (n, delay) if key == "burst" else (burst, n)
            elif a == "nodelay":
                nodelay = True
            else:
                raise _invalid(c, a)
        if zone is None:
            raise ConfigError('"limit_req" must have "zone" parameter', c.where)
        return LimitReqConf(zone=zone, burst=burst, nodelay=nodelay, delay=delay)

    def add_limit_conn(self, c: _Stmt, scope: _Scope, p: _Proto) -> None:
        zone, number = c.args
        n = _parse_int(number)
        if not n:
            raise ConfigError(f'invalid number of connections "{number}"', c.where)
        if any(x.zone == zone for x in scope.arrays.get("limit_conn", ())):
            raise ConfigError('"limit_conn" directive is duplicate', c.where)
        scope.add("limit_conn", LimitConnConf(zone=zone, number=n))
        p.refs.append(("limit_conn", zone, c))

    def status_code(self, c: _Stmt) -> int:
        n = _parse_int(c.args[0])
        if n is None:
            raise ConfigError(f'"{c.directive}" directive invalid number', c.where)
        if not 400 <= n <= 599:
            raise ConfigError("value must be between 400 and 599", c.where)
        return n

    def limits(self, s: _Scope, name: str) -> tuple:
        # limit_*_dry_run and limit_*_status inherit on their own, apart from the limits.
        dry_run = s.get(f"{name}_dry_run", False)
        status = s.get(f"{name}_status", 503)
        return tuple(replace(x, dry_run=dry_run, status=status) for x in s.get_array(name))
