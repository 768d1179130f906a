"""The stream (TCP) side of one node: ``stream {}`` servers, their status zones and upstreams.

A :class:`StreamSide` is built from a node's ``stream`` block. Each ``server`` listens on its
ports and either answers with ``return`` or proxies the connection (``proxy_pass``) to a stream
upstream: an :class:`sim.upstream.upstream.Upstream` of kind ``"stream"`` with the same balancing, passive
failure and health-check machinery as http (no ``draining`` state, no queue, no keepalive).

A client connection becomes a :class:`StreamSession`:

* the node accepts it (worker connection accounting, ``worker_connections`` limit) and the
  server's ``status_zone`` counts ``connections`` and ``processing``;
* ``limit_conn`` may end it at once with ``$status`` 503;
* the balancer picks a peer; the connection to it crosses the node->backend link and fails
  with a timeout after ``proxy_connect_timeout`` (cut link, loss, or nobody at the address) or
  with an error after one round trip (backend down, connection refused). A failed attempt counts
  toward ``max_fails`` and, with ``proxy_next_upstream on``, the next peer is tried while tries
  and ``proxy_next_upstream_timeout`` allow; with no peer left the session ends with 502;
* once connected, the client's bytes go up and the backend's answer (``Backend.stream_bytes()``)
  comes down; the session lasts the client's ``duration`` or until the last byte arrived,
  whichever is later, then ends with 200;
* ``proxy_timeout``: the exchange is the session's activity; when the client would keep the
  connection idle after the last byte for longer than ``proxy_timeout``, nginx closes it at
  the last byte plus ``proxy_timeout``, still with 200 (``StreamSession.timed_out``);
* an open-ended session (``duration_ms`` None or infinite: a live client) stays open after the
  answer until :meth:`StreamSide.close_session` (the client closed) or until it has been idle
  for ``proxy_timeout`` (:meth:`StreamSide.note_activity` says data moved).

Peers count ``connections``, ``active``, ``sent``, ``received`` and keep the moving averages
``connect_time``, ``first_byte_time`` and ``response_time`` (ms) that ``least_time`` ranks by;
zones count ``sessions`` by class, ``discarded`` (connections closed without a session),
``received`` and ``sent``. Stream ``health_check`` is :class:`sim.upstream.health.HealthChecker` with
``kind="stream"``. :class:`sim.workload.stream_clients.StreamWorkload` drives
sessions from a scenario's ``stream_workloads``. Choices the docs leave open are in docs/zone-sync.md ("Stream sessions").
"""

from __future__ import annotations

import math

from simpy.events import Timeout

from sim.conf.config import StreamConf, StreamServerConf
from sim.upstream.health import HealthChecker, HealthRegistry
from sim.upstream.upstream import Upstream
from sim.zones.limits import PASSED, limit_conn
from sim.zones.status import StreamServerZone

#: Weight of a new sample in the peers' moving averages (as nginx's least_time keeps them).
_EMA_NEW = 0.05

#: ``$status`` values of stream sessions.
OK, FORBIDDEN, BAD_GATEWAY, UNAVAILABLE = 200, 403, 502, 503


# ---------------------------------------------------------------------------------------------
# A session


class StreamSession:
    """One client connection through one stream server."""

    __slots__ = (
        "side",
        "server",
        "zone",
        "conn",
        "client_ip",
        "t0",
        "send_bytes",
        "duration_ms",
        "upstream",
        "peer",
        "tried",
        "tries_left",
        "attempt_at",
        "connect_ms",
        "status",
        "sent",
        "received",
        "held",
        "done",
        "final",
        "reply",
        "answer_at",
        "last_activity",
        "timed_out",
        "on_reply",
    )

    def __init__(self, side, server, zone, conn, client_ip, send_bytes, duration_ms, done):
        self.side = side
        self.server = server
        self.zone = zone
        self.conn = conn
        self.client_ip = client_ip
        self.t0 = side.env.now
        self.send_bytes = send_bytes
        self.duration_ms = duration_ms
        self.upstream = None
        self.peer = None
        self.tried: set | None = None
        self.tries_left = 0
        self.attempt_at = 0.0
        self.connect_ms = 0.0
        self.status = 0
        self.sent = 0  # bytes sent to the client
        self.received = 0  # bytes received from the client
        self.held: list = []  # limit_conn counts to give back
        self.done = done  # callable(session) once the session has ended
        self.final = False
        self.reply = 0  # bytes of the backend's answer, once connected
        self.answer_at: float | None = None  # when its last byte reaches the client
        self.last_activity = 0.0  # when data last moved (for proxy_timeout)
        self.timed_out = False  # ended by proxy_timeout (still 200, as in nginx)
        self.on_reply = None  # open-ended sessions: callable(session) once the answer arrived

    @property
    def open_ended(self) -> bool:
        """The session lasts until the client closes it (:meth:`StreamSide.close_session`)."""
        return self.duration_ms is None


class _Server:
    """A configured stream server and what it is bound to on this node."""

    __slots__ = ("conf", "zone", "upstream", "ports")

    def __init__(self, conf: StreamServerConf, zone, upstream):
        self.conf = conf
        self.zone = zone
        self.upstream = upstream
        self.ports = {(lst.address, lst.port) for lst in conf.listens if not lst.udp}


# ---------------------------------------------------------------------------------------------
# The stream side of a node


class StreamSide:
    """Stream servers, zones, upstreams and health checks of one node (one nginx process)."""

    def __init__(self, node, conf: StreamConf, previous: StreamSide | None = None, reloaded=None):
        self.node = node
        self.env = node.env
        self.conf = conf
        self.started = False
        self.stopped = False
        old_zones = previous.server_zones if previous is not None else {}
        self.server_zones: dict[str, StreamServerZone] = {}
        self.upstreams: dict[str, Upstream] = {}  # with a zone: visible in the API
        self.static_upstreams: dict[str, Upstream] = {}
        self._implicit: dict[str, Upstream] = {}
        # a reload keeps an upstream whose zone and block are unchanged (``reloaded``, from
        # sim.node.cycle: the same rule as http's), else builds it anew, busy servers as zombies
        old_ups = {} if previous is None or reloaded is None else {**previous.static_upstreams, **previous.upstreams}
        for uname, uconf in conf.upstreams.items():
            def build(uconf=uconf, uname=uname):
                rng = node.streams.get(f"{node.name}/stream/upstream/{uname}/lb")
                return Upstream(self.env, uconf, rng, node.cluster.resolve_name)

            up = reloaded(node, old_ups.get(uname), uconf, build) if old_ups else build()
            (self.upstreams if uconf.zone else self.static_upstreams)[uname] = up
        self.servers: list[_Server] = []
        for s in conf.servers:
            zone = None
            if s.status_zone:
                # a reload keeps the zone's counters, as the shared memory zone survives it
                zone = self.server_zones.get(s.status_zone) or old_zones.get(s.status_zone)
                zone = zone or StreamServerZone(s.status_zone)
                self.server_zones[s.status_zone] = zone
            upstream = None
            if s.upstream is not None:
                upstream = self.upstream_named(s.upstream)
            elif s.proxy_pass_address is not None:
                upstream = self._implicit_upstream(s.proxy_pass_address)
            self.servers.append(_Server(s, zone, upstream))
        self._hc_previous: dict[str, bool] = {}
        if previous is not None:
            for hc in previous.health_checkers:
                self._hc_previous.update(hc.snapshot())
        self.hc_registry = HealthRegistry()
        self.health_checkers: list[HealthChecker] = []
        for si, srv in enumerate(self.servers):
            s = srv.conf
            if not s.health_checks or srv.upstream is None:
                continue
            for ci, hc in enumerate(s.health_checks):
                match = conf.matches.get(hc.match) if hc.match else None
                self.health_checkers.append(
                    HealthChecker(
                        self.env, node.name, srv.upstream, hc, match, node.backend_of, node.network,
                        node.streams.get(f"{node.name}/stream/health/{si}/{ci}"),
                        s.proxy_connect_timeout_ms, s.proxy_timeout_ms,
                        kind="stream", stream_timeout_ms=s.health_check_timeout_ms, registry=self.hc_registry,
                    )
                )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the stream health checks (``mandatory persistent`` sees the previous verdicts)."""
        if self.started or self.stopped:
            return
        self.started = True
        for hc in self.health_checkers:
            hc.start(self._hc_previous or None)

    def stop(self) -> None:
        """The process is gone (crash) or replaced (reload): sessions in flight are abandoned."""
        if self.stopped:
            return
        self.stopped = True
        for hc in self.health_checkers:
            if hc.started and not hc.stopped:
                hc.stop()

    def server_added(self, upstream: Upstream, peer) -> None:
        """A server was added to a stream upstream at run time: its health checks take it on."""
        for hc in self.health_checkers:
            if hc.upstream is upstream:
                hc.on_server_added(peer)

    # --- lookups --------------------------------------------------------------------------------

    def upstream_named(self, name: str) -> Upstream | None:
        return self.upstreams.get(name) or self.static_upstreams.get(name)

    def _implicit_upstream(self, address: str) -> Upstream:
        up = self._implicit.get(address)
        if up is None:
            from sim.conf.config import ServerConf, UpstreamConf

            host, _, port = address.rpartition(":")
            conf = UpstreamConf(
                name=address, kind="stream", servers=(ServerConf(address=address, host=host, port=int(port)),)
            )
            rng = self.node.streams.get(f"{self.node.name}/stream/implicit/{address}")
            up = Upstream(self.env, conf, rng, self.node.cluster.resolve_name)
            self._implicit[address] = up
        return up

    def server_for(self, port: int, address: str | None = None) -> _Server | None:
        """The server listening on ``port``: an exact ``address`` match beats a wildcard listen;
        without an address (a client that does not care) the first server on the port."""
        wildcard = first = None
        for srv in self.servers:
            for a, p in srv.ports:
                if p != port:
                    continue
                if address is not None and a == address:
                    return srv
                if a is None and wildcard is None:
                    wildcard = srv
                if first is None:
                    first = srv
        return wildcard if address is not None else (wildcard or first)

    # --- sessions -------------------------------------------------------------------------------

    def open_session(
        self,
        port: int,
        client_ip: str,
        send_bytes: int,
        duration_ms: float | None,
        done=None,
        *,
        listen_address: str | None = None,
        discard: bool = False,
        on_reply=None,
    ) -> StreamSession | None:
        """A client connects to ``port``; None when nothing accepts it (node down, no listener,
        out of worker connections). ``discard``: the client closes before sending anything,
        so the connection ends without a session (the zone's ``discarded``).

        ``duration_ms`` None (or infinite) opens a session that lasts until
        :meth:`close_session`; ``on_reply(session)`` is called when the backend's answer has
        reached the client (``session.sent`` bytes)."""
        if duration_ms is not None and math.isinf(duration_ms):
            duration_ms = None
        node = self.node
        if self.stopped or not node.up:
            return None
        srv = self.server_for(port, listen_address)
        if srv is None:
            return None
        conn = node.open_conn()
        if conn is None:
            return None
        zone = srv.zone
        session = StreamSession(self, srv, zone, conn, client_ip, send_bytes, duration_ms, done)
        session.on_reply = on_reply
        if zone is not None:
            zone.connections += 1
            zone.processing += 1
        if discard:
            session.final = True
            if zone is not None:
                zone.processing -= 1
                zone.discarded += 1
            node.close_conn(conn)
            if done is not None:
                done(session)
            return session
        session.received = send_bytes
        s = srv.conf
        if s.limit_conn:
            checks = []
            for lc in s.limit_conn:
                lz = node.stream_limit_conns.get(lc.zone)
                if lz is not None:
                    checks.append((lz, self._expand(lz.conf.key, client_ip), lc))
            outcome, held = limit_conn(checks) if checks else (PASSED, [])
            if outcome != PASSED and not outcome.endswith("dry_run"):
                self._end(session, s.limit_conn[0].status)
                return session
            session.held = held
        if s.return_text is not None:
            session.sent = len(s.return_text.encode())
            self._end(session, OK)
            return session
        up = srv.upstream
        if up is None:
            self._end(session, BAD_GATEWAY)
            return session
        session.upstream = up
        session.tried = set()
        session.tries_left = up.tries_allowed()
        tries = s.proxy_next_upstream_tries
        if tries and tries < session.tries_left:
            session.tries_left = tries
        self._try(session)
        return session

    @staticmethod
    def _expand(template: str, client_ip: str) -> str:
        """The few variables a stream key can use here: the client address."""
        if "$" not in template:
            return template
        return template.replace("$binary_remote_addr", client_ip).replace("$remote_addr", client_ip)

    def _try(self, session: StreamSession) -> None:
        up = session.upstream
        now = self.env.now
        key = self._expand(up.conf.hash_key, session.client_ip) if up.conf.hash_key else session.client_ip
        peer = up.select(session.tried, key, now)
        if peer is None:
            self._end(session, BAD_GATEWAY)
            return
        session.peer = peer
        session.attempt_at = now
        peer.connections += 1
        peer.active += 1
        up.epoch += 1  # the API may reuse a rendered upstream until this changes
        node = self.node
        link = node.network.link(node.name, peer.server)
        backend = node.backend_of(peer.server, peer.name)
        timeout = session.server.conf.proxy_connect_timeout_ms
        c = link.connect_ms(timeout)
        if c is None or backend is None:
            # a cut or lossy link, or nobody at the address: the SYN goes unanswered
            self._later(timeout, (session, peer, "timeout"), self._attempt_failed)
            return
        if not backend.accepting:
            backend.refused += 1
            self._later(2.0 * link.one_way_ms, (session, peer, "error"), self._attempt_failed)
            return
        session.connect_ms = c
        self._later(c, (session, peer, link, backend), self._connected)

    def _later(self, delay: float, value, callback) -> None:
        ev = Timeout(self.env, max(delay, 0.0), value)
        ev.callbacks.append(callback)

    def _attempt_failed(self, ev) -> None:
        session, peer, _kind = ev._value
        if self.stopped or session.final:
            return
        now = self.env.now
        peer.note_failure(now)
        peer.active -= 1
        peer.upstream.epoch += 1
        session.peer = None
        s = session.server.conf
        session.tries_left -= 1
        retry = s.proxy_next_upstream and session.tries_left > 0
        limit = s.proxy_next_upstream_timeout_ms
        if retry and limit and now - session.t0 >= limit:
            retry = False
        if retry:
            session.tried.add(peer)
            self._try(session)
            return
        self._end(session, BAD_GATEWAY)

    def _connected(self, ev) -> None:
        session, peer, link, backend = ev._value
        if self.stopped or session.final:
            return
        c = session.connect_ms
        reply = backend.stream_bytes()
        up_ms = link.transfer_ms(session.send_bytes)
        down_ms = link.transfer_ms(reply)
        first_byte = c + up_ms + link.one_way_ms
        last_byte = c + up_ms + down_ms
        now = self.env.now
        attempt_at = session.attempt_at
        answer_at = attempt_at + last_byte  # the last data to move: from here the session idles
        session.reply = reply
        session.answer_at = answer_at
        session.last_activity = answer_at
        peer.connect_time = _ema(peer.connect_time, c)
        peer.first_byte_time = _ema(peer.first_byte_time, first_byte)
        peer.note_success(now)
        if session.duration_ms is None:
            # open-ended: response_time is known when the client (or proxy_timeout) ends it
            peer.upstream.epoch += 1
            self._later(answer_at - now, session, self._answered)
            return
        # the client holds the session for its duration, or until the answer has fully arrived;
        # nginx closes it first when it would stay idle for longer than proxy_timeout
        end_at = max(session.t0 + session.duration_ms, answer_at, now)
        idle_end = answer_at + session.server.conf.proxy_timeout_ms
        if end_at > idle_end:
            end_at = idle_end
            session.timed_out = True
        response = end_at - attempt_at
        peer.response_time = _ema(peer.response_time, response)
        peer.upstream.epoch += 1
        session.sent = reply
        self._later(end_at - now, (session, peer, reply), self._finished)

    def _finished(self, ev) -> None:
        session, peer, reply = ev._value
        if self.stopped or session.final:
            return
        peer.active -= 1
        peer.sent += session.send_bytes
        peer.received += reply
        peer.upstream.epoch += 1
        self._end(session, OK)

    # --- open-ended sessions (live clients) -----------------------------------------------------

    def _answered(self, ev) -> None:
        session = ev._value
        if self.stopped or session.final:
            return
        session.sent = session.reply
        if session.on_reply is not None:
            session.on_reply(session)
        if not session.final:
            self._idle_check_at(session.last_activity + session.server.conf.proxy_timeout_ms, session)

    def _idle_check_at(self, at: float, session: StreamSession) -> None:
        self._later(at - self.env.now, session, self._idle_check)

    def _idle_check(self, ev) -> None:
        # one timer per session: activity since it was armed only moves the deadline
        session = ev._value
        if self.stopped or session.final:
            return
        due = session.last_activity + session.server.conf.proxy_timeout_ms
        if self.env.now < due:
            self._idle_check_at(due, session)
            return
        session.timed_out = True
        self.close_session(session, session.received)

    def note_activity(self, session: StreamSession) -> None:
        """Data moved on an open-ended session now: its ``proxy_timeout`` starts again."""
        if not session.final:
            session.last_activity = max(session.last_activity, self.env.now)

    def close_session(
        self, session: StreamSession, received_bytes: int, sent_bytes: int | None = None
    ) -> None:
        """The client closed the connection: the session ends now with 200.

        ``received_bytes`` is what the client sent during the whole session (the zone's
        ``received`` and the peer's ``sent``); ``sent_bytes`` what it got (default: the
        backend's answer once it has arrived, else nothing). A peer still being connected to is
        given up without counting a failure. A session that has already ended is left alone.
        """
        if session.final or session.side is not self or self.stopped:
            return
        now = self.env.now
        session.received = received_bytes
        answered = session.answer_at is not None and now >= session.answer_at
        peer = session.peer
        if peer is not None:
            peer.active -= 1
            if session.answer_at is not None:  # connected
                peer.sent += received_bytes
                if answered:
                    peer.received += session.reply
                if session.duration_ms is None:
                    peer.response_time = _ema(peer.response_time, now - session.attempt_at)
            peer.upstream.epoch += 1
        if sent_bytes is None:
            sent_bytes = session.reply if answered else 0
        session.sent = sent_bytes
        self._end(session, OK)

    def _end(self, session: StreamSession, status: int) -> None:
        if session.final:
            return
        session.final = True
        session.status = status
        zone = session.zone
        if zone is not None:
            zone.processing -= 1
            zone.session_done(status)
            zone.received += session.received
            zone.sent += session.sent
        for lz, key in session.held:
            lz.release(key)
        session.held = []
        self.node.close_conn(session.conn)
        if session.done is not None:
            session.done(session)


def _ema(prev: float | None, sample: float) -> float:
    return sample if prev is None else prev + _EMA_NEW * (sample - prev)


__all__ = [
    "StreamServerZone",
    "StreamSession",
    "StreamSide",
]
