"""Active health checks: ``health_check`` and ``match`` (http), and their stream counterparts.

One :class:`HealthChecker` models one ``health_check`` directive on one node: nginx runs each
node's checks on its own, so two nodes probing the same backend keep separate verdicts. Every
peer of the upstream has its own check cycle: a check is a TCP connect over the node->backend
link, a request (http) or the ``send``/``expect`` exchange (stream), and a verdict; the next check
of that peer starts ``interval`` (plus a uniform jitter) after the previous one *completed*, so
checks of one peer never overlap. A check fails when the connection is refused, when the connect
or the answer does not arrive within the location's ``proxy_connect_timeout`` /
``proxy_read_timeout`` (stream: ``proxy_connect_timeout`` / ``health_check_timeout``), or when
the answer does not pass the ``match`` tests (default: status 2xx or 3xx).

``fails`` consecutive failures turn a peer ``unhealthy``, ``passes`` consecutive passes bring it
back; with ``mandatory`` a peer starts in ``checking`` and its first check decides. Several checks
on one upstream share a :class:`HealthRegistry`, so a peer is unhealthy while *any* check says so.
The counters (``health_checks.checks``, ``fails``, ``last_passed``) live on the peer; the state
change itself (downtime, downstart, the ``unhealthy`` counter, slow_start) is
:meth:`sim.upstream.peer.Peer.set_hc_state`. Choices the nginx docs leave open are in
``docs/health.md``.

Each check costs at most three simpy timeouts with callbacks (start, connected, done); no
generator process is created per check or per peer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from simpy.events import Timeout

from sim.conf.config import HealthCheckConf, MatchConf
from sim.core.rng import Batched

#: nginx examines only this much of an http health-check response body (``match`` ``body``).
HTTP_BODY_LIMIT = 256 * 1024
#: Stream ``expect`` sees what fits into the first read buffer (``proxy_buffer_size``, 16k).
STREAM_DATA_LIMIT = 16 * 1024

_DEFAULT_STATUS = ((200, 399),)


# ---------------------------------------------------------------------------------------------
# The pass criteria


class CompiledMatch:
    """A ``match`` block with its regular expressions compiled once."""

    __slots__ = ("conf", "status", "headers", "body", "expect")

    def __init__(self, conf: MatchConf):
        self.conf = conf
        self.status = conf.status
        self.headers = tuple(
            (h.name.lower(), h.op, h.value, re.compile(h.value) if h.op in ("~", "!~") else None)
            for h in conf.headers
        )
        self.body = re.compile(conf.body_regex) if conf.body_regex is not None else None
        self.expect = re.compile(conf.expect) if conf.expect is not None and conf.expect_regex else None

    def http_passes(self, status: int, headers: Mapping[str, str], body: str) -> bool:
        """Whether an http answer passes every test of the block (``require`` is not modelled)."""
        st = self.status
        if st is not None and _status_in(status, st.ranges) == st.negate:
            return False
        if self.headers:
            lower = {k.lower(): v for k, v in headers.items()}
            for name, op, value, rx in self.headers:
                if not _header_passes(lower.get(name), op, value, rx):
                    return False
        if self.body is not None:
            found = self.body.search(_head(body, HTTP_BODY_LIMIT)) is not None
            if found == self.conf.body_negate:
                return False
        return True

    def stream_passes(self, data: str) -> bool:
        """Whether the data read back passes ``expect`` (a block without ``expect`` passes)."""
        expect = self.conf.expect
        if expect is None:
            return True
        data = _head(data, STREAM_DATA_LIMIT)
        if self.expect is not None:
            return self.expect.search(data) is not None
        return data.startswith(expect)


def _status_in(status: int, ranges) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


def _header_passes(value: str | None, op: str, want: str | None, rx) -> bool:
    if op == "exists":
        return value is not None
    if op == "absent":
        return value is None
    if op == "=":
        return value == want
    if op == "!=":
        return value != want  # an absent header is "not equal"
    if op == "~":
        return value is not None and rx.search(value) is not None
    if op == "!~":
        return value is None or rx.search(value) is None
    raise ValueError(f'unknown header test operator "{op}"')


def _head(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:  # cannot exceed the limit even if every character took 4 bytes
        return text
    return text.encode()[:limit].decode(errors="ignore")


def http_response_passes(match: MatchConf | None, status: int, headers: Mapping[str, str], body: str) -> bool:
    """The http pass criterion: every test of ``match``, or status 2xx/3xx without one."""
    if match is None:
        return _status_in(status, _DEFAULT_STATUS)
    return CompiledMatch(match).http_passes(status, headers, body)


def stream_data_passes(match: MatchConf | None, data: str) -> bool:
    """The stream pass criterion for the data read back (``expect`` literal or regex)."""
    if match is None:
        return True
    return CompiledMatch(match).stream_passes(data)


# ---------------------------------------------------------------------------------------------
# Several checks on one upstream


class HealthRegistry:
    """The verdicts of all health checks of one upstream on one node.

    A peer is ``unhealthy`` while any check holds that verdict, else ``checking`` while any
    check has not decided yet (mandatory), else it has no health-check state.
    """

    def __init__(self):
        self._verdicts: dict = {}  # peer -> {checker: "checking" | "unhealthy"}

    @classmethod
    def of(cls, upstream) -> HealthRegistry:
        """The registry shared by every checker of ``upstream`` (created on first use and kept
        by the upstream, so it lives exactly as long)."""
        reg = upstream.health_registry
        if reg is None:
            reg = upstream.health_registry = cls()
        return reg

    def verdicts(self, peer) -> dict:
        return dict(self._verdicts.get(peer, {}))

    def combined(self, peer) -> str | None:
        v = self._verdicts.get(peer)
        if not v:
            return None
        return "unhealthy" if "unhealthy" in v.values() else "checking"

    def set(self, peer, checker, verdict: str | None, now: float) -> None:
        """Record one checker's verdict and move the peer to the combined state."""
        v = self._verdicts.get(peer)
        if verdict is None:
            if v is not None:
                v.pop(checker, None)
                if not v:
                    del self._verdicts[peer]
        else:
            if v is None:
                v = self._verdicts[peer] = {}
            v[checker] = verdict
        state = self.combined(peer)
        if state != peer.hc_state and not peer.removed:
            peer.set_hc_state(state, now)

    def forget_peer(self, peer) -> None:
        """A removed peer: drop its verdicts without touching it."""
        self._verdicts.pop(peer, None)

    def forget_checker(self, checker, now: float) -> None:
        """A stopped checker's verdicts no longer count."""
        for peer in [p for p, v in self._verdicts.items() if checker in v]:
            self.set(peer, checker, None, now)


# ---------------------------------------------------------------------------------------------
# The checker


class _Slot:
    """One peer's check cycle within one checker."""

    __slots__ = ("peer", "verdict", "fails_row", "passes_row", "started", "passed", "gone", "link")

    def __init__(self, peer):
        self.peer = peer
        self.verdict: str | None = None  # this checker's opinion: None, "checking", "unhealthy"
        self.fails_row = 0
        self.passes_row = 0
        self.started = 0.0
        self.passed = False
        self.gone = False
        self.link = None


class HealthChecker:
    """The ``health_check`` of one location (http) or server (stream) on one node.

    ``backend_of(address, name)`` returns the backend listening at ``"host:port"`` (``name`` is
    the server's name as written, with the same port) or None; it is the node's lookup.
    ``rng`` is a numpy Generator used for jitter only.
    """

    def __init__(
        self,
        env,
        node_name: str,
        upstream,
        hc: HealthCheckConf,
        match: MatchConf | None,
        backend_of: Callable,
        network,
        rng,
        connect_timeout_ms: float,
        read_timeout_ms: float,
        kind: str | None = None,
        stream_timeout_ms: float = 5000,
        registry: HealthRegistry | None = None,
    ):
        self.env = env
        self.node_name = node_name
        self.upstream = upstream
        self.hc = hc
        self.match = match
        self._match = CompiledMatch(match) if match is not None else None
        self.backend_of = backend_of
        self.network = network
        self.connect_timeout_ms = connect_timeout_ms
        self.kind = kind or upstream.kind
        if self.kind not in ("http", "stream"):
            raise ValueError('health check kind must be "http" or "stream"')
        # http answers must arrive within proxy_read_timeout; stream health_check_timeout
        # replaces proxy_timeout for checks.
        self.read_timeout_ms = read_timeout_ms if self.kind == "http" else stream_timeout_ms
        self.registry = registry if registry is not None else HealthRegistry.of(upstream)
        self._jitter = Batched(rng.random, 256) if hc.jitter_ms > 0 else None
        self._slots: dict = {}  # peer -> _Slot
        self.started = False
        self.stopped = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, previous_state: Mapping[str, bool | str] | None = None) -> None:
        """Begin checking every peer now (the first checks run at this instant).

        ``previous_state`` (``{peer.server: healthy}``, as :meth:`stop` returns it, or peer
        state strings) is used with ``mandatory persistent``: peers that were healthy before the
        reload start ``up`` instead of ``checking``.
        """
        if self.started:
            raise RuntimeError("health checker already started")
        self.started = True
        keep_up = previous_state if (self.hc.mandatory and self.hc.persistent and previous_state) else {}
        for peer in list(self.upstream.peers):
            if not peer.removed:
                self._track(peer, _was_healthy(keep_up.get(peer.server)))

    def on_server_added(self, peer) -> None:
        """A server added at run time: ``checking`` first with ``mandatory``, checked at once."""
        if self.started and not self.stopped and peer not in self._slots and not peer.removed:
            self._track(peer, False)

    def stop(self) -> dict[str, bool]:
        """Stop checking (node crash or reload); returns the state ``start`` of a successor takes.

        Checks in flight are abandoned, and this checker's verdicts stop counting.
        """
        snapshot = self.snapshot()
        self.stopped = True
        for slot in self._slots.values():
            slot.gone = True
        self.registry.forget_checker(self, self.env.now)
        return snapshot

    def snapshot(self) -> dict[str, bool]:
        """``{peer.server: healthy}`` by this checker's verdicts (for ``mandatory persistent``)."""
        return {s.peer.server: s.verdict is None for s in self._slots.values() if not s.gone}

    def verdict(self, peer) -> str | None:
        """This checker's own opinion of ``peer``: None (healthy), ``checking`` or ``unhealthy``."""
        slot = self._slots.get(peer)
        return slot.verdict if slot is not None else None

    def _track(self, peer, keep_up: bool) -> None:
        slot = self._slots[peer] = _Slot(peer)
        if self.hc.mandatory and not keep_up:
            slot.verdict = "checking"
            self.registry.set(peer, self, "checking", self.env.now)
        self._later(0, slot, self._begin)

    def _later(self, delay: float, slot: _Slot, callback) -> None:
        ev = Timeout(self.env, delay, slot)
        ev.callbacks.append(callback)

    def _next(self, slot: _Slot) -> None:
        delay = self.hc.interval_ms
        if self._jitter is not None:
            delay += self._jitter() * self.hc.jitter_ms
        self._later(delay, slot, self._begin)

    # --- one check ------------------------------------------------------------------------------

    def _address(self, peer) -> tuple[str, str | None]:
        """Where checks of ``peer`` go: its address, with the ``port=`` of the check if set."""
        port = self.hc.port
        if port is None or peer.port is None:
            return peer.server, peer.name
        return _with_port(peer.server, port), _with_port(peer.name, port)

    def _begin(self, ev) -> None:
        slot: _Slot = ev._value
        if slot.gone:
            return
        peer = slot.peer
        if peer.removed:
            slot.gone = True
            del self._slots[peer]
            self.registry.forget_peer(peer)
            return
        if peer.down:  # nginx does not check servers marked down; look again next interval
            self._next(slot)
            return
        slot.started = self.env.now
        # the link is the one client traffic to this server uses: same host, whatever the port
        link = slot.link = self.network.link(self.node_name, peer.server)
        if self.hc.udp:
            if link.cut:  # the datagram vanishes; so would an ICMP error
                self._done_after(slot, self.read_timeout_ms, self._match is None or self.match.expect is None)
                return
            self._later(link.one_way_ms, slot, self._arrived_udp)
            return
        c = link.connect_ms(self.connect_timeout_ms)
        if c is None:
            self._done_after(slot, self.connect_timeout_ms, False)
            return
        self._later(c, slot, self._connected)

    def _lookup(self, peer):
        """The backend the check reaches: (backend or None, whether the host itself exists)."""
        address, name = self._address(peer)
        backend = self.backend_of(address, name)
        if backend is not None or self.hc.port is None:
            return backend, backend is not None
        return None, self.backend_of(peer.server, peer.name) is not None

    def _connected(self, ev) -> None:
        slot: _Slot = ev._value
        if slot.gone:
            return
        backend, host_exists = self._lookup(slot.peer)
        if backend is None and not host_exists:
            # nobody answers at that address: the SYN goes unanswered until the connect timeout
            waited = self.env.now - slot.started
            self._done_after(slot, max(0.0, self.connect_timeout_ms - waited), False)
            return
        probe = backend.health_probe() if backend is not None else None
        if probe is None:  # refused: the RST came back as the handshake would have
            self._done(slot, False)
            return
        status, headers, body, think_ms = probe
        link = slot.link
        if self.kind == "http":
            request = f"GET {self.hc.uri} HTTP/1.0\r\nHost: {self.upstream.name}\r\n\r\n"
            wait = link.transfer_ms(len(request)) + think_ms + link.transfer_ms(_answer_bytes(headers, body))
            passed = (
                self._match.http_passes(status, headers, body)
                if self._match is not None
                else _status_in(status, _DEFAULT_STATUS)
            )
        else:
            m = self.match
            if m is None or m.expect is None:
                # connect only, or a send without expect: done once the data is written
                self._done(slot, True)
                return
            wait = think_ms + link.transfer_ms(len(body.encode()))
            if m.send:
                wait += link.transfer_ms(len(m.send))
            passed = self._match.stream_passes(body)
        if wait > self.read_timeout_ms:
            self._done_after(slot, self.read_timeout_ms, False)
        else:
            self._done_after(slot, wait, passed)

    def _arrived_udp(self, ev) -> None:
        slot: _Slot = ev._value
        if slot.gone:
            return
        link = slot.link
        m = self.match
        left = max(0.0, self.read_timeout_ms - (self.env.now - slot.started))
        backend, host_exists = self._lookup(slot.peer)
        if not host_exists:  # no host, no ICMP error either: silence until the timeout
            self._done_after(slot, left, m is None or m.expect is None)
            return
        probe = backend.health_probe() if backend is not None else None
        if probe is None:  # port unreachable: the ICMP error travels back
            self._done_after(slot, link.one_way_ms, False)
            return
        if m is None or m.expect is None:
            # success is the absence of an error until the timeout
            self._done_after(slot, left, True)
            return
        _status, _headers, body, think_ms = probe
        wait = think_ms + link.one_way_ms
        if wait > left:
            self._done_after(slot, left, False)
        else:
            self._done_after(slot, wait, self._match.stream_passes(body))

    def _done_after(self, slot: _Slot, delay: float, passed: bool) -> None:
        slot.passed = passed
        self._later(delay, slot, self._finished)

    def _finished(self, ev) -> None:
        slot: _Slot = ev._value
        if not slot.gone:
            self._done(slot, slot.passed)

    def _done(self, slot: _Slot, passed: bool) -> None:
        peer = slot.peer
        if peer.removed:
            slot.gone = True
            self._slots.pop(peer, None)
            self.registry.forget_peer(peer)
            return
        peer.hc_checks += 1
        if not passed:
            peer.hc_fails += 1
        peer.hc_last_passed = passed
        peer.upstream.epoch += 1  # the API may reuse a rendered upstream until this changes
        peer.changes += 1
        verdict = new = slot.verdict
        if passed:
            slot.fails_row = 0
            slot.passes_row += 1
            if verdict == "checking" or (verdict == "unhealthy" and slot.passes_row >= self.hc.passes):
                new = None
        else:
            slot.passes_row = 0
            slot.fails_row += 1
            if verdict == "checking" or (verdict is None and slot.fails_row >= self.hc.fails):
                new = "unhealthy"
        if new != verdict:
            slot.verdict = new
            self.registry.set(peer, self, new, self.env.now)
        self._next(slot)


def _was_healthy(value) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("checking", "unhealthy")
    return bool(value)


def _with_port(address: str, port: int) -> str:
    if address.startswith("unix:"):
        return address
    host, _, _old = address.rpartition(":")  # only called for addresses that carry a port
    return f"{host}:{port}"


def _answer_bytes(headers: Mapping[str, str], body: str) -> int:
    head = 17 + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2  # status line, headers, CRLF
    return head + len(body.encode())
