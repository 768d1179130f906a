"""nginx.conf -> typed, frozen configuration objects.

This module holds the objects; :mod:`sim.conf.reader` reads the files into them. The file is read with crossplane's lexer and directive table (crossplane is NGINX's own
parser), ``include`` is resolved as nginx does (relative paths against the main file's
directory, globs sorted, absolute paths optionally remapped), and the directives clustersim
models are validated with nginx's rules and defaults. Errors are :class:`ConfigError` with the
file and line, worded like ``nginx -t``. Directives that are valid nginx but not simulated are
kept in ``NginxConf.not_simulated`` so a run summary can list them; nothing is dropped silently.
The choices made where nginx leaves room are listed in ``docs/config.md``.

All durations are milliseconds (see :mod:`sim.core.clock`), all sizes bytes. Inheritance of
``proxy_*`` and similar directives from ``http`` and ``server`` into ``location`` is resolved
here, so every :class:`LocationConf` carries its effective values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------
# Errors and source positions


@dataclass(frozen=True)
class Where:
    """Where a directive was written."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class ConfigError(ValueError):
    """An invalid configuration: ``str(err)`` is ``"file:line: message"``."""

    def __init__(self, message: str, where: Where | None = None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


# ---------------------------------------------------------------------------------------------
# Upstreams

BALANCING_METHODS = ("round_robin", "least_conn", "least_time", "hash", "ip_hash", "random")


@dataclass(frozen=True)
class ServerConf:
    """One ``server`` directive of an ``upstream`` block (http or stream)."""

    address: str  # as written, with the port nginx adds for http ("10.0.0.1:80", "b1.example.com:80")
    host: str  # "10.0.0.1", "b1.example.com", or "unix:/path"
    port: int | None  # None only for unix: sockets
    weight: int = 1
    max_conns: int = 0
    max_fails: int = 1
    fail_timeout_ms: int = 10_000
    backup: bool = False
    down: bool = False
    drain: bool = False  # http only
    slow_start_ms: int = 0
    route: str = ""  # http only
    service: str | None = None
    resolve: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class UpstreamConf:
    name: str
    kind: str  # "http" | "stream"
    servers: tuple[ServerConf, ...]
    zone: str | None = None  # without a zone the upstream is static (not in the API)
    zone_size: int | None = None
    method: str = "round_robin"  # one of BALANCING_METHODS
    hash_key: str | None = None  # for "hash"
    hash_consistent: bool = False
    least_time_mode: str | None = None  # "header"|"last_byte" (http), "connect"|"first_byte"|"last_byte" (stream)
    least_time_inflight: bool = False
    random_two: bool = False
    random_method: str | None = None  # "least_conn" | "least_time=header" ... (with random two)
    queue_size: int | None = None  # `queue N` (http only)
    queue_timeout_ms: int = 60_000
    keepalive: int | None = None
    state_file: str | None = None
    resolver_in_block: bool = False
    where: Where | None = None


# ---------------------------------------------------------------------------------------------
# Health checks


@dataclass(frozen=True)
class StatusTest:
    """``status [!] 200 301-303 ...``: passes when the code is (not) in one of the ranges."""

    negate: bool
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class HeaderTest:
    """``header Name [= | != | ~ | !~] value`` or ``header [!] Name``."""

    name: str
    op: str  # "exists" | "absent" | "=" | "!=" | "~" | "!~"
    value: str | None = None


@dataclass(frozen=True)
class MatchConf:
    """A ``match`` block (http tests, or stream ``send``/``expect``)."""

    name: str
    kind: str  # "http" | "stream"
    status: StatusTest | None = None
    headers: tuple[HeaderTest, ...] = ()
    body_regex: str | None = None
    body_negate: bool = False
    require: tuple[str, ...] = ()
    send: str | None = None  # stream; \xNN escapes already decoded
    expect: str | None = None  # stream: literal, or a regex when expect_regex
    expect_regex: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class HealthCheckConf:
    interval_ms: int = 5000
    jitter_ms: int = 0
    fails: int = 1
    passes: int = 1
    uri: str = "/"
    port: int | None = None
    match: str | None = None
    mandatory: bool = False
    persistent: bool = False
    udp: bool = False  # stream only
    where: Where | None = None


# ---------------------------------------------------------------------------------------------
# Cache, keyval, limits, resolver


@dataclass(frozen=True)
class CachePathConf:
    """``proxy_cache_path``; the keys_zone name is the cache's name in the API."""

    path: str
    name: str
    keys_zone_size: int
    levels: str | None = None
    inactive_ms: int = 600_000
    max_size: int | None = None  # None: unlimited
    loader_files: int = 100
    loader_sleep_ms: int = 50
    loader_threshold_ms: int = 200
    manager_files: int = 100
    manager_sleep_ms: int = 50
    manager_threshold_ms: int = 200
    where: Where | None = None


@dataclass(frozen=True)
class CacheValid:
    """One ``proxy_cache_valid``: codes (empty tuple with any=True for ``any``)."""

    codes: tuple[int, ...]
    any: bool
    time_ms: int


@dataclass(frozen=True)
class KeyvalZoneConf:
    name: str
    kind: str  # "http" | "stream"
    size: int
    state: str | None = None
    timeout_ms: int | None = None
    type: str = "string"  # "string" | "ip" | "prefix"
    sync: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class KeyvalConf:
    """``keyval key $variable zone=name``."""

    key: str
    variable: str
    zone: str
    where: Where | None = None


@dataclass(frozen=True)
class LimitReqZoneConf:
    name: str
    key: str
    size: int
    rate_per_s: float  # "10r/s" -> 10.0, "30r/m" -> 0.5
    sync: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class LimitReqConf:
    zone: str
    burst: int = 0
    nodelay: bool = False
    delay: int = 0
    dry_run: bool = False  # limit_req_dry_run in effect where this limit applies
    status: int = 503  # limit_req_status


@dataclass(frozen=True)
class LimitConnZoneConf:
    name: str
    kind: str  # "http" | "stream"
    key: str
    size: int
    where: Where | None = None


@dataclass(frozen=True)
class LimitConnConf:
    zone: str
    number: int
    dry_run: bool = False
    status: int = 503


@dataclass(frozen=True)
class ResolverConf:
    addresses: tuple[str, ...]
    valid_ms: int | None = None
    status_zone: str | None = None
    timeout_ms: int = 30_000
    ipv6: bool = True
    where: Where | None = None


# ---------------------------------------------------------------------------------------------
# http servers and locations


@dataclass(frozen=True)
class ListenConf:
    address: str | None  # None: every address ("*")
    port: int
    ssl: bool = False
    default_server: bool = False
    udp: bool = False  # stream only
    where: Where | None = None


@dataclass(frozen=True)
class AccessRule:
    """``allow``/``deny``: ``cidr`` is ``"all"`` or an address/prefix."""

    action: str  # "allow" | "deny"
    cidr: str


@dataclass(frozen=True)
class ProxyConf:
    """The proxying directives in effect for a location (inherited ones resolved)."""

    next_upstream: tuple[str, ...] = ("error", "timeout")
    next_upstream_tries: int = 0
    next_upstream_timeout_ms: int = 0
    connect_timeout_ms: int = 60_000
    read_timeout_ms: int = 60_000
    send_timeout_ms: int = 60_000
    cache: str | None = None  # proxy_cache zone name, None when off
    cache_key: str = "$scheme$proxy_host$request_uri"
    cache_valid: tuple[CacheValid, ...] = ()
    cache_use_stale: tuple[str, ...] = ()  # empty when off
    cache_bypass: tuple[str, ...] = ()
    no_cache: tuple[str, ...] = ()
    cache_revalidate: bool = False
    cache_lock: bool = False
    cache_lock_timeout_ms: int = 5000
    cache_lock_age_ms: int = 5000
    cache_min_uses: int = 1
    cache_background_update: bool = False


@dataclass(frozen=True)
class ClientConf:
    """How a client's request is read and its connection kept (ngx_http_core_module), with
    nginx's defaults. The live server applies them; docs/live.md says how."""

    header_buffer_size: int = 1024  # client_header_buffer_size
    large_header_buffers: tuple[int, int] = (4, 8192)  # large_client_header_buffers number size
    header_timeout_ms: int = 60_000  # client_header_timeout
    body_timeout_ms: int = 60_000  # client_body_timeout
    max_body_size: int = 1_048_576  # client_max_body_size; 0: not checked
    keepalive_timeout_ms: int = 75_000  # keepalive_timeout; 0: no keep-alive
    keepalive_header_s: int | None = None  # keepalive_timeout's second value ("Keep-Alive: timeout=N")
    keepalive_requests: int = 1000
    merge_slashes: bool = True
    max_headers: int = 1000  # max_headers (nginx 1.29.8): more header lines are a 494
    lingering_close: str = "on"  # lingering_close on | off | always
    lingering_time_ms: int = 30_000  # lingering_time
    lingering_timeout_ms: int = 5_000  # lingering_timeout


@dataclass(frozen=True)
class ErrorPageConf:
    """``error_page code ... [=[response]] uri;``: where a response with one of ``codes`` goes.

    ``uri`` is a URI in the same server (an internal redirect), a named location (``@name``) or
    a URL (the client is redirected, 302 unless ``=301/302/303/307/308`` says otherwise).
    ``response``: None keeps the original status, -1 (a bare ``=``) takes the status of the
    location redirected to, any other number replaces the status."""

    codes: tuple[int, ...]
    uri: str
    response: int | None = None
    where: Where | None = None


@dataclass(frozen=True)
class LocationConf:
    modifier: str  # "" (prefix) | "=" | "~" | "~*" | "^~"
    path: str
    proxy_pass: str | None = None  # as written ("http://backend")
    upstream: str | None = None  # the upstream name proxy_pass points to, when it names one
    proxy_pass_address: str | None = None  # "host:port" when proxy_pass points at an address
    return_code: int | None = None
    return_text: str | None = None  # body text, or the URL for 301/302/303/307/308
    api: bool = False
    api_write: bool = False
    root: str | None = None
    alias: str | None = None
    access: tuple[AccessRule, ...] = ()
    health_checks: tuple[HealthCheckConf, ...] = ()
    status_zone: str | None = None
    proxy: ProxyConf = field(default_factory=ProxyConf)
    limit_req: tuple[LimitReqConf, ...] = ()
    limit_conn: tuple[LimitConnConf, ...] = ()
    locations: tuple[LocationConf, ...] = ()  # nested locations
    where: Where | None = None
    error_pages: tuple[ErrorPageConf, ...] = ()  # in effect here (inherited if none are set here)
    intercept_errors: bool = False  # proxy_intercept_errors
    recursive_error_pages: bool = False
    internal: bool = False  # reachable only by internal redirects (error_page)
    client: ClientConf = field(default_factory=ClientConf)  # in effect in this location


@dataclass(frozen=True)
class HttpServerConf:
    listens: tuple[ListenConf, ...]  # at least one: default "*:80"
    server_names: tuple[str, ...] = ("",)
    status_zone: str | None = None
    locations: tuple[LocationConf, ...] = ()
    ssl: bool = False  # any listen has ssl
    where: Where | None = None
    return_code: int | None = None  # a server-level `return` (answered before any location)
    return_text: str | None = None
    error_pages: tuple[ErrorPageConf, ...] = ()  # for requests no location matches
    client: ClientConf = field(default_factory=ClientConf)  # in effect at the server level


@dataclass(frozen=True)
class HttpConf:
    upstreams: dict[str, UpstreamConf] = field(default_factory=dict)
    servers: tuple[HttpServerConf, ...] = ()
    cache_paths: dict[str, CachePathConf] = field(default_factory=dict)
    keyval_zones: dict[str, KeyvalZoneConf] = field(default_factory=dict)
    keyvals: tuple[KeyvalConf, ...] = ()
    limit_req_zones: dict[str, LimitReqZoneConf] = field(default_factory=dict)
    limit_conn_zones: dict[str, LimitConnZoneConf] = field(default_factory=dict)
    matches: dict[str, MatchConf] = field(default_factory=dict)
    resolvers: tuple[ResolverConf, ...] = ()
    keepalive_timeout_ms: int = 75_000
    keepalive_requests: int = 1000
    client_body_buffer_size: int = 16_384


# ---------------------------------------------------------------------------------------------
# stream


@dataclass(frozen=True)
class ZoneSyncServerConf:
    host: str
    port: int
    resolve: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class ZoneSyncConf:
    servers: tuple[ZoneSyncServerConf, ...]
    interval_ms: int = 1000
    buffers_number: int = 8
    buffers_size: int = 4096
    recv_buffer_size: int = 4096
    connect_retry_interval_ms: int = 1000
    connect_timeout_ms: int = 5000
    timeout_ms: int = 5000
    ssl: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class StreamServerConf:
    listens: tuple[ListenConf, ...]
    proxy_pass: str | None = None
    upstream: str | None = None
    proxy_pass_address: str | None = None
    status_zone: str | None = None
    proxy_connect_timeout_ms: int = 60_000
    proxy_timeout_ms: int = 600_000
    proxy_next_upstream: bool = True
    proxy_next_upstream_tries: int = 0
    proxy_next_upstream_timeout_ms: int = 0
    health_checks: tuple[HealthCheckConf, ...] = ()
    health_check_timeout_ms: int = 5000
    zone_sync: ZoneSyncConf | None = None
    limit_conn: tuple[LimitConnConf, ...] = ()
    return_text: str | None = None
    ssl: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class StreamConf:
    upstreams: dict[str, UpstreamConf] = field(default_factory=dict)
    servers: tuple[StreamServerConf, ...] = ()
    keyval_zones: dict[str, KeyvalZoneConf] = field(default_factory=dict)
    keyvals: tuple[KeyvalConf, ...] = ()
    limit_conn_zones: dict[str, LimitConnZoneConf] = field(default_factory=dict)
    matches: dict[str, MatchConf] = field(default_factory=dict)
    resolvers: tuple[ResolverConf, ...] = ()


# ---------------------------------------------------------------------------------------------
# The whole file


@dataclass(frozen=True)
class NotSimulated:
    """A valid directive clustersim accepts but does not model."""

    directive: str
    where: Where


@dataclass(frozen=True)
class NginxConf:
    file: str
    worker_processes: int = 1
    http: HttpConf | None = None
    stream: StreamConf | None = None
    not_simulated: tuple[NotSimulated, ...] = ()
    files: tuple[str, ...] = ()  # every file read, main first
