"""zone_sync: replication of ``sync`` shared memory zones between the nodes of a cluster.

One :class:`ZoneSync` models the ``zone_sync`` server of one node (``ngx_stream_zone_sync_module``).
It resolves its ``zone_sync_server`` names through the scenario's DNS to node addresses and keeps
one outgoing connection to each (a full mesh: every node does the same). A connection crosses the
node<->node link of :mod:`sim.cluster.network`: the handshake takes a round trip, and fails after
``zone_sync_connect_timeout`` on a cut or lossy link or when no node has the address, or at
once (refused) when the node there is down; a failed or closed connection is tried again
``zone_sync_connect_retry_interval`` later.

Every ``zone_sync_interval`` the node polls its ``sync`` zones (keyval zones of http and stream,
and http ``limit_req`` zones; sticky zones are not synced yet). Each zone's output queue (records
created or updated locally; repeated updates of one key between polls coalesce in the queue) is
drained into at most ``zone_sync_buffers`` *number* buffers of *size* bytes; each buffer becomes
one message: a 12-byte header, the zone name, then records (``wire_bytes`` of a keyval zone's
:class:`sim.zones.keyval_entry.Pair` or of a :class:`sim.zones.limits.LimitReqRecord`; a keyval
pair travels with its expiry instant on the sender). A record bigger than one
buffer is skipped (the zone's ``skipped_records``). The messages go to every connected node, in
order, and arrive after the link's transfer time. The queue is drained
only while at least one other node is connected; with none, records wait (``records_pending``
grows), and nodes that were unreachable get everything from the snapshot sent when their
connection is (re)established.

The receiver merges records last-write-wins by the origin node's clock
(:meth:`sim.zones.keyval.KeyvalZone.apply_records`, :meth:`sim.zones.limits.LimitReqZone.apply_records`,
each :meth:`apply_remote` for every record of a message); a
record's remaining lifetime travels with it, so a pair expires everywhere at about the same time.
Deletes never travel.

Liveness: each poll, an established connection over a working link counts as a successful
exchange (data, or an uncounted keepalive); over a cut link nothing gets through, and once no
exchange has succeeded for ``zone_sync_timeout`` the connection is closed and its unsent data
dropped. A peer process that died or restarted answers with a reset, noticed at the next poll.
Messages written while the link is cut wait in the connection (TCP's send buffer) and go once
it works again, unless the connection is closed first.

Counters, as ``/stream/zone_sync/`` shows them: ``nodes_online`` (established connections),
``msgs_in``/``msgs_out``, ``bytes_in``/``bytes_out`` (a message counts out when it is written to
a connection and in when it arrives), per zone ``records_pending`` and ``records_total``.
docs/zone-sync.md explains every choice the nginx documentation leaves open.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from simpy.events import Timeout

from sim.conf.config import ZoneSyncConf

#: Fixed part of a message header: length, protocol version, zone-name length, module tag and
#: module version (the zone name follows it).
HEADER_BYTES = 12

#: Module tags of the zones that can sync today.
HTTP_KEYVAL, STREAM_KEYVAL = "http_keyval", "stream_keyval"
HTTP_LIMIT_REQ = "http_limit_req"

CONNECTING, ESTABLISHED, WAITING, CLOSED = "connecting", "established", "waiting", "closed"


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """One message on a zone_sync connection: records of one zone."""

    tag: str
    zone: str
    records: tuple  # sim.zones.keyval_entry.Pair, or sim.zones.limits.LimitReqRecord
    size: int
    snapshot: bool = False
    #: beside each record, when it expires on the sender (sim time; inf: never); () for zones
    #: whose records do not expire
    expiries: tuple = ()


def message_size(zone: str, records) -> int:
    """Bytes of a message carrying ``records`` of ``zone``."""
    return HEADER_BYTES + len(zone.encode()) + sum(r.wire_bytes for r in records)


class Connection:
    """This node's connection to one cluster node (an address ``zone_sync_server`` resolved to)."""

    __slots__ = (
        "address",
        "node",
        "is_self",
        "state",
        "epoch",
        "remote",
        "last_ok",
        "busy_until",
        "backlog",
        "established_at",
        "connects",
    )

    def __init__(self, address: str, node, is_self: bool):
        self.address = address
        self.node = node  # the Node at that address, or None
        self.is_self = is_self
        self.state = CLOSED
        self.epoch = 0  # bumped at every state change: callbacks of an older state are void
        self.remote: ZoneSync | None = None  # the peer's zone_sync when the connection was made
        self.last_ok = 0.0
        self.busy_until = 0.0
        self.backlog: list[SyncMessage] = []
        self.established_at: float | None = None
        self.connects = 0  # times this connection was established


class ZoneSync:
    """The zone_sync module of one node: connections, polling, sending, receiving, counters."""

    def __init__(self, node, conf: ZoneSyncConf):
        self.node = node
        self.env = node.env
        self.conf = conf
        self.started = False
        self.stopped = False
        self.msgs_in = 0
        self.msgs_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        #: records left out of snapshots because one would not fit a buffer
        self.snapshot_records_skipped = 0
        #: records received and merged (applied or ignored) by this node
        self.records_received = 0
        self.connections: dict[str, Connection] = {}
        self._resolve = any(s.resolve for s in conf.servers)

    @classmethod
    def for_node(cls, node) -> ZoneSync | None:
        """The zone_sync of ``node``'s configuration: the first stream server with ``zone_sync``."""
        stream = node.conf.stream
        if stream is None:
            return None
        for s in stream.servers:
            if s.zone_sync is not None:
                return cls(node, s.zone_sync)
        return None

    # --- what the API shows ---------------------------------------------------------------------

    @property
    def nodes_online(self) -> int:
        """Established connections (the node itself counts when a name resolves to it)."""
        return sum(1 for c in self.connections.values() if c.state == ESTABLISHED)

    @property
    def zones(self) -> dict:
        """``{zone name: zone}`` of every synced zone (each has records_pending/records_total)."""
        return {name: z for (_tag, name), z in self.sync_zones().items()}

    def records_pending_total(self) -> int:
        return sum(z.records_pending for z in self.sync_zones().values())

    @property
    def records_skipped(self) -> int:
        """Records too large for one buffer, left out of messages (nginx logs each one)."""
        return self.snapshot_records_skipped + sum(z.skipped_records for z in self.sync_zones().values())

    def sync_zones(self) -> dict:
        """``{(module tag, zone name): zone}`` for the node's zones with ``sync``, looked up now
        (a reload or restart replaces the node's zone objects)."""
        out = {}
        node = self.node
        for tag, zones in (
            (HTTP_KEYVAL, node.keyvals),
            (STREAM_KEYVAL, node.stream_keyvals),
            (HTTP_LIMIT_REQ, node.limit_reqs),
        ):
            for name, z in zones.items():
                if z.conf.sync:
                    out[(tag, name)] = z
        return out

    @property
    def accepting(self) -> bool:
        """Whether this node takes zone_sync connections now."""
        return self.started and not self.stopped and self.node.up

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Resolve the cluster's nodes, connect to each, and begin polling."""
        if self.started or self.stopped:
            return
        self.started = True
        self._refresh_targets()
        self._later(self.conf.interval_ms, None, self._tick)

    def stop(self) -> None:
        """The process is gone (crash) or replaced (reload): every connection closes at once."""
        if self.stopped:
            return
        self.stopped = True
        for conn in self.connections.values():
            conn.state = CLOSED
            conn.epoch += 1
            conn.backlog = []
            conn.remote = None

    # --- targets --------------------------------------------------------------------------------

    def _lookup(self, host: str, resolve: bool = False) -> list[str]:
        if host.startswith("unix:"):
            return []
        try:
            ipaddress.ip_address(host.strip("[]"))
            return [host]  # an address stands for itself
        except ValueError:
            pass
        cluster = self.node.cluster
        resolver = getattr(self.node, "stream_resolver", None)
        if resolve and resolver is not None:
            # ``zone_sync_server NAME resolve``: the stream resolver asks again whenever its
            # answer's validity (``valid=``) has run out, and counts every query it sends
            answer = resolver.query(host, self.env.now)
            if answer.ok:
                return [cluster.node_address(a) for a in answer.addrs]
            # an error keeps the connections the last good answers gave
            return list(self.connections)
        addrs = cluster.resolve_name(host)
        if addrs is not None:
            return addrs
        node = cluster.nodes.get(host)  # a bare node name, for scenarios without a hosts map
        return [node.address] if node is not None else []

    def targets(self) -> list[tuple[str, object]]:
        """``(address, node or None)`` of every cluster node, each once, in configuration order."""
        by_address = {n.address: n for n in self.node.cluster.nodes.values()}
        out, seen = [], set()
        for s in self.conf.servers:
            for addr in self._lookup(s.host, s.resolve):
                if addr not in seen:
                    seen.add(addr)
                    out.append((addr, by_address.get(addr)))
        return out

    def _refresh_targets(self) -> None:
        wanted = self.targets()
        addresses = {a for a, _ in wanted}
        for addr in [a for a in self.connections if a not in addresses]:
            # gone from DNS: close and stop retrying
            conn = self.connections.pop(addr)
            conn.state = CLOSED
            conn.epoch += 1
        for addr, node in wanted:
            if addr in self.connections:
                continue
            conn = Connection(addr, node, node is self.node)
            self.connections[addr] = conn
            if conn.is_self:
                # the node's own listener, over loopback: up at once and never cut
                conn.state = ESTABLISHED
                conn.established_at = self.env.now
                conn.connects += 1
                conn.remote = self
            else:
                self._connect(conn)

    # --- connecting -----------------------------------------------------------------------------

    def _link(self, conn: Connection):
        other = conn.node.name if conn.node is not None else conn.address
        return self.node.network.link(self.node.name, other)

    def _later(self, delay: float, value, callback) -> None:
        ev = Timeout(self.env, max(delay, 0.0), value)
        ev.callbacks.append(callback)

    def _connect(self, conn: Connection) -> None:
        conn.state = CONNECTING
        conn.epoch += 1
        timeout = self.conf.connect_timeout_ms
        c = self._link(conn).connect_ms(timeout)
        if c is None or conn.node is None:
            # the SYN is lost or nobody has the address: give up at the connect timeout
            self._later(timeout, (conn, conn.epoch), self._connect_failed)
        else:
            self._later(c, (conn, conn.epoch), self._handshake_done)

    def _handshake_done(self, ev) -> None:
        conn, epoch = ev._value
        if self.stopped or conn.epoch != epoch:
            return
        remote = conn.node.zone_sync if conn.node.up else None
        if remote is None or not remote.accepting:
            self._wait(conn)  # refused: the reset came back within the round trip
            return
        now = self.env.now
        conn.state = ESTABLISHED
        conn.epoch += 1
        conn.remote = remote
        conn.last_ok = now
        conn.busy_until = now
        conn.established_at = now
        conn.connects += 1
        self._log(f"connected to {conn.node.name}")
        snapshot = self._snapshot()
        if snapshot:
            self._send(conn, snapshot, self._probe(conn) == "ok")

    def _connect_failed(self, ev) -> None:
        conn, epoch = ev._value
        if not self.stopped and conn.epoch == epoch:
            self._wait(conn)

    def _wait(self, conn: Connection) -> None:
        conn.state = WAITING
        conn.epoch += 1
        self._later(self.conf.connect_retry_interval_ms, (conn, conn.epoch), self._retry)

    def _retry(self, ev) -> None:
        conn, epoch = ev._value
        if not self.stopped and conn.epoch == epoch and conn.state == WAITING:
            self._connect(conn)

    def _close(self, conn: Connection, reason: str) -> None:
        """Close an established connection; its unsent data is lost, a new one is tried later."""
        conn.backlog = []
        conn.remote = None
        self._log(f"connection to {conn.node.name} {reason}")
        self._wait(conn)

    def _log(self, text: str) -> None:
        self.node.events.append((self.env.now, "zone_sync", text))

    # --- polling and sending --------------------------------------------------------------------

    def _probe(self, conn: Connection) -> str:
        """``"ok"`` (an exchange would succeed now), ``"reset"`` (the peer's process is gone or
        new) or ``"silent"`` (nothing gets through the link)."""
        if self._link(conn).cut:
            return "silent"
        target = conn.node
        remote = target.zone_sync
        if not target.up or remote is not conn.remote or remote is None or remote.stopped:
            return "reset"
        return "ok"

    def _tick(self, _ev) -> None:
        if self.stopped:
            return
        now = self.env.now
        if self._resolve:
            self._refresh_targets()
        timeout = self.conf.timeout_ms
        live: list[tuple[Connection, bool]] = []
        for conn in list(self.connections.values()):
            if conn.state != ESTABLISHED:
                continue
            if conn.is_self:  # loopback: always through, and it carries data like any other
                live.append((conn, True))
                continue
            verdict = self._probe(conn)
            if verdict == "reset":
                self._close(conn, "reset by peer")
                continue
            if verdict == "ok":
                # data or a keepalive reaches the peer one link latency from now
                conn.last_ok = max(conn.last_ok, now + self._link(conn).one_way_ms)
            elif now - conn.last_ok >= timeout:
                self._close(conn, "timed out")
                continue
            live.append((conn, verdict == "ok"))
        # the output queue drains when another node can take it; the node's own connection then
        # gets a copy like every other, so an isolated node keeps its records pending
        if any(not conn.is_self for conn, _ok in live):
            messages = self._drain()
            for conn, ok in live:
                if messages:
                    self._send(conn, messages, ok)
                elif ok and conn.backlog:
                    self._flush(conn)
        self._later(self.conf.interval_ms, None, self._tick)

    def _drain(self) -> list[SyncMessage]:
        """Each zone's output queue into at most ``number`` buffers of ``size`` bytes."""
        out = []
        size, number = self.conf.buffers_size, self.conf.buffers_number
        for (tag, name), zone in self.sync_zones().items():
            room = size - HEADER_BYTES - len(name.encode())
            for _ in range(number):
                records = zone.drain_pending(room, room)
                if not records:
                    break
                out.append(SyncMessage(tag, name, tuple(records), message_size(name, records), False,
                                       zone.expiries(records)))
        return out

    def _snapshot(self) -> list[SyncMessage]:
        """Every record of every synced zone, packed into buffer-sized messages."""
        out = []
        size = self.conf.buffers_size
        for (tag, name), zone in self.sync_zones().items():
            room = size - HEADER_BYTES - len(name.encode())
            records, expiries = zone.snapshot_expiring()
            batch: list = []
            times: list = []  # the expiry instants of the batch's records (keyval zones)
            left = room
            for i in range(len(records)):
                rec = records[i]
                n = rec.wire_bytes
                if n > room:
                    self.snapshot_records_skipped += 1
                    continue
                if n > left:
                    out.append(SyncMessage(tag, name, tuple(batch), message_size(name, batch), True, tuple(times)))
                    batch, times, left = [], [], room
                batch.append(rec)
                if expiries is not None:
                    times.append(expiries[i])
                left -= n
            if batch:
                out.append(SyncMessage(tag, name, tuple(batch), message_size(name, batch), True, tuple(times)))
        return out

    def _send(self, conn: Connection, messages: list[SyncMessage], link_ok: bool) -> None:
        """Write messages to a connection (counted now); they leave when the link lets them."""
        self.msgs_out += len(messages)
        self.bytes_out += sum(m.size for m in messages)
        conn.backlog.extend(messages)
        if link_ok:
            self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        messages, conn.backlog = conn.backlog, []
        now = self.env.now
        # in order on the connection: a message never overtakes the one before it
        transfer = 0.0 if conn.is_self else self._link(conn).transfer_ms(sum(m.size for m in messages))
        at = max(now + transfer, conn.busy_until)
        conn.busy_until = at
        self._later(at - now, (conn, conn.epoch, messages, now), self._deliver)

    def _deliver(self, ev) -> None:
        conn, epoch, messages, written_at = ev._value
        if self.stopped or conn.epoch != epoch:
            return  # the connection was closed: what was in flight went with it
        if not conn.is_self and self._link(conn).cut:
            # caught by the cut on the way: TCP resends it if the connection survives
            conn.backlog[0:0] = messages
            return
        remote = conn.remote
        if remote is None or not conn.node.up or conn.node.zone_sync is not remote or remote.stopped:
            return  # the peer's process is gone; the next poll sees the reset
        conn.last_ok = max(conn.last_ok, self.env.now)
        remote.receive(messages, written_at)

    # --- receiving ------------------------------------------------------------------------------

    def receive(self, messages: list[SyncMessage], written_at: float) -> None:
        """Messages arrived from another node: count them and merge their records.

        A record's remaining lifetime is taken as it was when the sender wrote the message.
        """
        if self.stopped:
            return
        zones = self.sync_zones()
        for m in messages:
            self.msgs_in += 1
            self.bytes_in += m.size
            zone = zones.get((m.tag, m.zone))
            if zone is None:
                continue  # a zone this node does not sync: ignored, as an unknown zone is
            self.records_received += len(m.records)
            zone.apply_records(m.records, m.expiries, written_at)


__all__ = [
    "CLOSED",
    "CONNECTING",
    "ESTABLISHED",
    "HEADER_BYTES",
    "HTTP_KEYVAL",
    "HTTP_LIMIT_REQ",
    "STREAM_KEYVAL",
    "WAITING",
    "Connection",
    "SyncMessage",
    "ZoneSync",
    "message_size",
]
