"""Upstream groups (``upstream``), http and stream: their peers, selection and run-time changes.

An :class:`Upstream` owns its peers (:class:`sim.upstream.peer.Peer`, in primary and backup
lists), its balancer, its ``queue`` and the run-time add/patch/remove operations of the API's
servers endpoints, with nginx's validation rules (:mod:`sim.upstream.servers`).

A ``server NAME resolve`` (or a server added through the API by name) is a *parent* entry: it is
listed among the configured servers but takes no traffic; every address the name resolves to is
a peer with ``parent`` and ``host`` set. The upstream resolves its parents through the node's
:class:`sim.zones.resolver.Resolver` when the node hands it one (:meth:`Upstream.start_resolving`),
and again whenever an answer's validity runs out, on one timer per upstream: new addresses
become peers, vanished ones are removed (zombies while busy), as nginx's zone module does.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sim.conf.config import ServerConf, UpstreamConf
from sim.core import errors
from sim.upstream.balancer import make_balancer
from sim.upstream.peer import HIST_BOUNDS as HIST_BOUNDS
from sim.upstream.peer import Peer
from sim.upstream.servers import parse_address, validate_server

DOWNISH = ("unavail", "checking", "unhealthy")

#: Server parameters a PATCH may change, as (API field, Peer attribute); a resolved server's
#: children follow what is patched on their parent.
_PATCHABLE = (
    ("max_conns", "max_conns"),
    ("max_fails", "max_fails"),
    ("fail_timeout", "fail_timeout_ms"),
    ("slow_start", "slow_start_ms"),
    ("route", "route"),
    ("down", "down"),
    ("drain", "drain"),
)
#: What a resolved peer takes over from its parent when it is created.
_INHERITED = ("weight", "max_conns", "max_fails", "fail_timeout_ms", "slow_start_ms", "route", "down", "drain")
#: Answers that say what the name's addresses are (none, for NXDOMAIN); other errors keep the peers.
_DEFINITE = ("noerror", "nxdomain")
#: Shortest wait before a name is asked again (keeps a zero ``valid=`` from spinning).
_MIN_RESOLVE_WAIT_MS = 1.0


def same_upstream_conf(a: UpstreamConf, b: UpstreamConf) -> bool:
    """Two upstream blocks say the same thing (where in which file they stand aside)."""
    if replace(a, where=None, servers=()) != replace(b, where=None, servers=()):
        return False
    return [replace(x, where=None) for x in a.servers] == [replace(x, where=None) for x in b.servers]


def _is_name(host: str) -> bool:
    """True for a domain name, False for an IP literal or a unix: path."""
    if host.startswith("unix:"):
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


def _with_port(ip: str, port: int | None) -> str:
    return f"[{ip}]:{port}" if ":" in ip and not ip.startswith("[") else f"{ip}:{port}"


class Upstream:
    """A group of peers with its balancer, queue and run-time configuration API."""

    def __init__(self, env, conf: UpstreamConf, rng, resolve_name=None):
        self.env = env
        self.conf = conf
        self.name = conf.name
        self.kind = conf.kind
        self.zone = conf.zone
        self.method = conf.method
        self.resolve_name = resolve_name  # callable(host) -> list[str] | None (the scenario's DNS)
        #: bumped on every change an API view of the upstream can show (peer counters, states,
        #: configuration, servers added or removed, keepalive, queue); code that changes a peer or
        #: the upstream outside these methods bumps it too. Lets the API reuse a rendered body.
        self.epoch = 0
        self.peers: list[Peer] = []
        self.primary: list[Peer] = []
        self.backups: list[Peer] = []
        self._next_id = 0
        self.balancer: Any = make_balancer(
            conf.method,
            rng=rng,
            hash_consistent=conf.hash_consistent,
            least_time_mode=conf.least_time_mode,
            least_time_inflight=conf.least_time_inflight,
            random_two=conf.random_two,
            random_method=conf.random_method,
        )
        self.backup_balancer: Any = make_balancer("round_robin", rng=rng)
        self.single = False
        # what select() passes to the balancer: one bound method for the upstream's life, which
        # reads the attempt's tried set and time from these two fields (no closure per call)
        self._sel_tried: Any = frozenset()  # a set or frozenset of peers
        self._sel_now = 0.0
        self._eligible_cb = self._eligible
        # queue (http only)
        self.queue_max = conf.queue_size
        self.queue_timeout_ms = conf.queue_timeout_ms
        self.queue: deque = deque()
        self.queue_len = 0
        self.overflows = 0
        # keepalive connection cache
        self.keepalive_max = conf.keepalive or 0
        self.keepalive_idle: dict[int, int] = {}
        self.keepalive = 0
        self.zombie_peers: list[Peer] = []
        # set by the node: reserves a new server's memory in the zone, False when it is full
        self.reserve_memory: Callable[[str, str], bool] | None = None
        # resolved servers: the parent entries (no traffic), their directives, when each is due
        # to be asked again; the node's resolver and hooks come with start_resolving
        self.parents: list[Peer] = []
        self._resolve_confs: dict[int, ServerConf] = {}
        self._resolve_due: dict[int, float] = {}
        self.resolver: Any = None  # the node's Resolver, once it starts resolving
        self.address_of: Callable[[str], str] | None = None
        #: set by the node: health checks take on a peer that resolution added
        self.on_peer_added: Callable[[Peer], None] | None = None
        #: the health checks' shared verdicts on this upstream's peers (sim.upstream.health.HealthRegistry)
        self.health_registry: Any = None
        #: an observer called with the outcome of every select() (a peer, or None), for traces
        #: and tests (compiled methods cannot be wrapped)
        self.on_select: Callable[[Peer | None], Any] | None = None
        self._resolving = False
        self._timer_at: float | None = None
        self._timer_token = 0
        #: servers were added, changed or removed through the API since the configuration was loaded
        self.changed_at_runtime = False
        for s in conf.servers:
            self._add_conf(s, env.now)
        self._rebuild()

    # --- building -----------------------------------------------------------------------------

    def _addresses_for(self, conf: ServerConf) -> list[str]:
        if conf.host.startswith("unix:") or conf.port is None:
            return [conf.address]
        try:
            ipaddress.ip_address(conf.host.strip("[]"))
            return [conf.address]
        except ValueError:
            pass
        if self.resolve_name is not None:
            ips = self.resolve_name(conf.host)
            if ips:
                return [f"{ip}:{conf.port}" for ip in ips]
        return [conf.address]

    def _add_conf(self, conf: ServerConf, now: float) -> Peer:
        if conf.resolve and _is_name(conf.host):
            parent = Peer(self, self._next_id, conf, conf.address, now)
            self._next_id += 1
            self.parents.append(parent)
            self._resolve_confs[parent.id] = conf
            # due at once: the first resolution happens when the node starts resolving
            self._resolve_due[parent.id] = now
            return parent
        added: list[Peer] = []
        for addr in self._addresses_for(conf):  # (always at least one address)
            peer = Peer(self, self._next_id, conf, addr, now)
            self._next_id += 1
            self.peers.append(peer)
            (self.backups if conf.backup else self.primary).append(peer)
            added.append(peer)
        return added[0]

    def _rebuild(self) -> None:
        self.epoch += 1
        for p in self.peers:  # what follows an add, patch or remove: every peer counts as changed
            p.changes += 1
        self.single = len(self.primary) == 1 and not self.backups
        # read by every proxied request: counted here, where every change of the server lists
        # or of a server's ``down`` flag ends up (add, patch, remove)
        self._tries = sum(1 for p in self.primary if not p.down) + len(self.backups)
        self.balancer.rebuild(self.primary)
        self.backup_balancer.rebuild(self.backups)

    def peer(self, pid: int) -> Peer:
        for p in self.peers:
            if p.id == pid:
                return p
        for p in self.parents:
            if p.id == pid:
                return p
        raise errors.UpstreamServerNotFound(f'server with ID "{pid}" does not exist')

    def conf_peers(self) -> list[Peer]:
        """Every configured server as ``.../servers/`` lists it: peers and resolve parents, by id."""
        if not self.parents:
            return list(self.peers)
        return sorted([*self.peers, *self.parents], key=lambda p: p.id)

    def children_of(self, parent: Peer) -> list[Peer]:
        return [p for p in self.peers if p.parent == parent.id]

    def _drop_peer(self, peer: Peer) -> None:
        """Take a peer out of the group; requests still running on it make it a zombie."""
        peer.removed = True
        self.peers.remove(peer)
        (self.backups if peer.backup else self.primary).remove(peer)
        if peer.active > 0:
            self.zombie_peers.append(peer)
        n = self.keepalive_idle.pop(peer.id, 0)
        self.keepalive -= n

    # --- reloads ------------------------------------------------------------------------------

    def survives_reload(self, conf: UpstreamConf) -> bool:
        """Whether a reload to ``conf`` keeps this upstream as it is: peers, ids, counters, state.

        The upstream's shared memory zone must keep its name and size, the upstream block must
        be the same (servers, parameters, balancing, queue, keepalive), and what the zone holds
        must still be what the configuration says: no servers added, changed or removed through
        the API (a reload without ``state`` puts the configured servers back, ids from 0), and no
        ``resolve`` servers (their peers are re-created by the new resolution, with new ids).
        """
        return (
            self.zone is not None
            and conf.zone == self.zone
            and conf.zone_size == self.conf.zone_size
            and same_upstream_conf(conf, self.conf)
            and not self.changed_at_runtime
            and not self._resolve_confs
        )

    def carry_over(self, conf: UpstreamConf) -> None:
        """Kept across a reload: the new configuration's object, and no idle keepalive
        connections (they belonged to the old worker processes, which close them)."""
        self.conf = conf
        self.epoch += 1
        for p in self.peers:
            p.changes += 1
        self.keepalive_idle.clear()
        self.keepalive = 0

    def take_zombies(self, old: Upstream) -> None:
        """Replacing ``old`` at a reload: its servers still busy with requests are zombies here."""
        busy = [p for p in [*old.peers, *old.zombie_peers] if p.active > 0]
        for p in busy:
            p.removed = True
        self.zombie_peers.extend(busy)
        self.epoch += 1

    # --- resolved servers ---------------------------------------------------------------------

    def start_resolving(self, resolver=None, address_of: Callable[[str], str] | None = None) -> None:
        """Resolve every parent now and keep resolving each when its answer expires.

        ``resolver`` is the node's :class:`sim.zones.resolver.Resolver` (queries counted in its
        zone); without one the scenario's DNS (``resolve_name``) answers once, uncounted.
        ``address_of`` turns a host-map entry into an address (node names stand for nodes).
        """
        self.resolver = resolver
        self.address_of = address_of
        self._resolving = True
        if not self.parents:
            return
        now = self.env.now
        for parent in list(self.parents):
            self._resolve_parent(parent, now)
        self._rebuild()
        self._schedule()

    def stop_resolving(self) -> None:
        """The configuration or the process is gone: pending timers do nothing any more."""
        self._resolving = False
        self._timer_token += 1
        self._timer_at = None

    def _schedule(self) -> None:
        if not self._resolving or self.resolver is None:
            return
        due = min(self._resolve_due.values(), default=math.inf)
        if due == math.inf or (self._timer_at is not None and self._timer_at <= due):
            return
        self._timer_at = due
        self._timer_token += 1
        ev = self.env.timeout(max(0.0, due - self.env.now))
        ev.callbacks.append(lambda _ev, token=self._timer_token: self._on_resolve_timer(token))

    def _on_resolve_timer(self, token: int) -> None:
        if token != self._timer_token or not self._resolving:
            return  # superseded by an earlier timer, or resolving stopped
        self._timer_at = None
        now = self.env.now
        changed = False
        for parent in list(self.parents):
            if self._resolve_due.get(parent.id, math.inf) <= now:
                changed = self._resolve_parent(parent, now) or changed
        if changed:
            self._rebuild()
        self._schedule()

    def _address(self, entry: str, port: int | None) -> str:
        return _with_port(self.address_of(entry) if self.address_of is not None else entry, port)

    def _lookup(self, conf: ServerConf, now: float) -> tuple[list[str] | None, float]:
        """(the addresses ``conf`` names now, or None to keep the current ones; when to ask again)."""
        resolver = self.resolver
        if resolver is None:
            ips = self.resolve_name(conf.host) if self.resolve_name is not None else None
            return [_with_port(ip, conf.port) for ip in ips or ()], math.inf
        if conf.service is None:
            ans = resolver.query(conf.host, now)
            until = max(ans.valid_until_ms, now + _MIN_RESOLVE_WAIT_MS)
            if ans.rcode not in _DEFINITE:
                return None, until
            return [self._address(a, conf.port) for a in ans.addrs], until
        service = conf.service
        qname = f"{service}.{conf.host}" if "." in service else f"_{service}._tcp.{conf.host}"
        ans = resolver.query(qname, now, "SRV")
        until = max(ans.valid_until_ms, now + _MIN_RESOLVE_WAIT_MS)
        if ans.rcode not in _DEFINITE:
            return None, until
        out: list[str] = []
        for record in ans.addrs:
            target, _, port = record.rpartition(":")
            if not target or not port.isdigit():
                continue
            if not _is_name(target):
                out.append(self._address(target.strip("[]"), int(port)))
                continue
            sub = resolver.query(target, now)
            if sub.ok:
                out.extend(self._address(a, int(port)) for a in sub.addrs)
                until = min(until, max(sub.valid_until_ms, now + _MIN_RESOLVE_WAIT_MS))
        return out, until

    def _resolve_parent(self, parent: Peer, now: float) -> bool:
        """Ask for ``parent``'s name and make its peers match the answer; True if they changed."""
        conf = self._resolve_confs[parent.id]
        addrs, due = self._lookup(conf, now)
        self._resolve_due[parent.id] = due
        if addrs is None:
            return False
        wanted = list(dict.fromkeys(addrs))
        changed = False
        children = self.children_of(parent)
        for child in children:
            if child.server not in wanted:
                self._drop_peer(child)
                changed = True
        have = {c.server for c in children}
        for addr in wanted:
            if addr not in have:
                self._add_child(parent, conf, addr, now)
                changed = True
        return changed

    def _add_child(self, parent: Peer, conf: ServerConf, addr: str, now: float) -> Peer:
        child = Peer(self, self._next_id, conf, addr, now)
        self._next_id += 1
        for attr in _INHERITED:
            setattr(child, attr, getattr(parent, attr))
        child.effective_weight = child.weight
        child.parent = parent.id
        child.resolved_host = conf.host
        self.peers.append(child)
        (self.backups if child.backup else self.primary).append(child)
        if self.on_peer_added is not None:
            self.on_peer_added(child)
        return child

    @property
    def zombies(self) -> int:
        self.zombie_peers = [p for p in self.zombie_peers if p.active > 0]
        return len(self.zombie_peers)

    # --- selection ----------------------------------------------------------------------------

    def select(self, tried, key, now: float) -> Peer | None:
        """Choose a peer for one attempt, or None when no peer can take it now."""
        self._sel_tried = tried
        self._sel_now = now
        eligible = self._eligible_cb
        peer = self.balancer.select(self.primary, eligible, key, now)
        if peer is None and self.backups:
            peer = self.backup_balancer.select(self.backups, eligible, key, now)
        if peer is not None:
            peer._sync(now)
            peer.note_selected(now)
        if self.on_select is not None:
            self.on_select(peer)
        return peer

    def _eligible(self, p: Peer) -> bool:
        """Whether ``p`` may take the attempt :meth:`select` is choosing for."""
        now = self._sel_now
        if p._unavail_until is not None:
            # close an unavail period that ran out, so a slow_start ramp is in place before
            # the balancer reads this peer's weights
            p._sync(now)
        if p.down or p.drain or p.hc_state is not None or p in self._sel_tried:
            return False
        if p.max_conns and p.active >= p.max_conns:
            return False
        if p._fails and p.max_fails and p._fails >= p.max_fails and not self.single:
            return now - p.checked > p.fail_timeout_ms
        return True

    def tries_allowed(self) -> int:
        """nginx's per-request try count: the non-down primaries plus the backups."""
        return self._tries

    def take_keepalive(self, peer: Peer) -> bool:
        n = self.keepalive_idle.get(peer.id, 0)
        if n:
            self.epoch += 1
            self.keepalive_idle[peer.id] = n - 1
            self.keepalive -= 1
            return True
        return False

    def give_keepalive(self, peer: Peer) -> None:
        if self.keepalive_max and not peer.removed and self.keepalive < self.keepalive_max:
            self.epoch += 1
            self.keepalive_idle[peer.id] = self.keepalive_idle.get(peer.id, 0) + 1
            self.keepalive += 1

    def reset_statistics(self) -> None:
        self.epoch += 1
        for p in self.peers:
            p.reset_statistics()
        self.overflows = 0

    # --- run-time configuration (the API's servers endpoints) ---------------------------------

    def add_server(self, body: Any, *, has_resolver: bool) -> Peer:
        if self.zone is None:
            raise errors.UpstreamStatic("upstream is static")
        vals = validate_server(body, self.kind, creating=True)
        if "server" not in vals:
            raise errors.UpstreamConfFormatError('missing "server" argument')
        service = vals.get("service")
        address, host, port, is_name = parse_address(vals["server"], service, self.kind)
        backup = vals.get("backup", False)
        # NGINX Plus adds a backup to any zone'd group whose balancing method allows backups,
        # whether or not the configuration listed one (nginx-plus-go-client's suite relies on it)
        if backup and self.method in ("hash", "ip_hash", "random"):
            raise errors.UpstreamNoBackup(f'upstream "{self.name}" has no backup')
        if is_name and not has_resolver:
            raise errors.UpstreamConfNoResolver(f'no resolver defined to resolve "{host}"')
        for p in [*self.peers, *self.parents]:
            if p.name == address and p.parent is None and p.backup == backup:
                raise errors.EntryExists(f'server "{address}" already exists')
        if self.reserve_memory is not None and not self.reserve_memory(address, address):
            raise errors.UpstreamOutOfMemory(f'upstream "{self.name}" memory exhausted')
        conf = ServerConf(
            address=address,
            host=host,
            port=port,
            weight=vals.get("weight", 1),
            max_conns=vals.get("max_conns", 0),
            max_fails=vals.get("max_fails", 1),
            fail_timeout_ms=vals.get("fail_timeout", 10_000),
            backup=backup,
            down=vals.get("down", False),
            drain=vals.get("drain", False),
            slow_start_ms=vals.get("slow_start", 0),
            route=vals.get("route", ""),
            service=service,
            resolve=is_name,
        )
        peer = self._add_conf(conf, self.env.now)
        self.changed_at_runtime = True
        if peer in self.parents:
            # resolved at once through the node's resolver, and kept up to date from then on
            self._resolve_parent(peer, self.env.now)
            self._schedule()
        self._rebuild()
        if peer not in self.parents and self.on_peer_added is not None:
            self.on_peer_added(peer)  # health checks take the new server on
        return peer

    def patch_server(self, pid: int, body: Any) -> Peer:
        if self.zone is None:
            raise errors.UpstreamStatic("upstream is static")
        peer = self.peer(pid)
        vals = validate_server(body, self.kind, creating=False)
        if "id" in body and body["id"] != pid:
            raise errors.UpstreamConfFormatError('invalid "id" value')
        for key in ("backup", "service"):
            if key in vals and vals[key] != getattr(peer, key):
                raise errors.UpstreamConfFormatError(f'invalid "{key}" value')
        self.epoch += 1  # a check below may refuse after a field has changed
        peer.changes += 1
        self.changed_at_runtime = True
        if "server" in vals:
            address, host, port, is_name = parse_address(vals["server"], None, self.kind)
            if address != peer.name:
                if peer.parent is not None or peer.service is not None or peer in self.parents:
                    raise errors.UpstreamServerImmutable(f'server "{pid}" address is immutable')
                if is_name:
                    raise errors.UpstreamBadAddress(f'invalid "server" argument "{vals["server"]}"')
                peer.name = peer.server = peer.address = address
                peer.host, peer.port = host, port
        if "weight" in vals and vals["weight"] != peer.weight:
            if peer.parent is not None:
                raise errors.UpstreamServerWeightImmutable(f'server "{pid}" weight is immutable')
            peer.weight = vals["weight"]
            peer.effective_weight = peer.weight
        targets = [peer, *self.children_of(peer)] if peer in self.parents else [peer]
        for target in targets:
            if target is not peer and "weight" in vals:
                target.weight = target.effective_weight = peer.weight
            for key, attr in _PATCHABLE:
                if key in vals:
                    setattr(target, attr, vals[key])
            if vals.get("down") is False:
                target.clear_fails(self.env.now)
        self._rebuild()
        return peer

    def remove_server(self, pid: int) -> list[Peer]:
        if self.zone is None:
            raise errors.UpstreamStatic("upstream is static")
        peer = self.peer(pid)
        if peer.parent is not None:
            raise errors.UpstreamServerImmutable(f'server "{pid}" not removable')
        self.epoch += 1
        self.changed_at_runtime = True
        if peer in self.parents:
            for child in self.children_of(peer):
                self._drop_peer(child)
            peer.removed = True
            self.parents.remove(peer)
            del self._resolve_confs[peer.id]
            del self._resolve_due[peer.id]
        else:
            self._drop_peer(peer)
        self._rebuild()
        return list(self.peers)

    def servers_conf(self) -> list[dict]:
        return [p.conf_dict(self.kind) for p in self.conf_peers()]
