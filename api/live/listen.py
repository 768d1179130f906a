"""Where each node listens: the sockets a served cluster binds, planned from the configs.

A :class:`Binding` is one socket of one node, standing for the config's ``listen`` directives on
one port (``http`` or ``stream``); :func:`plan_bindings` lists them for a cluster and
:func:`_listen_socket` binds one, turning a failure into a :class:`LiveError` that names the node,
address and port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field


class LiveError(RuntimeError):
    """Live mode cannot start (a port in use, an address that cannot be bound)."""


@dataclass
class Binding:
    """One socket of one node: where it is bound and which config listens it stands for."""

    node: object  # sim.node.node.Node
    kind: str  # "http" | "stream"
    port: int  # the config's port (what the model sees)
    bind_address: str
    bind_port: int
    config_addresses: frozenset = frozenset()  # addresses the config's listens name on this port
    server: asyncio.AbstractServer | None = None
    connections: set = field(default_factory=set)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "address": self.bind_address,
            "port": self.bind_port,
            "config_port": self.port,
            "url": f"http://{self.bind_address}:{self.bind_port}" if self.kind == "http" else None,
        }


def node_ports(conf) -> tuple[dict[int, frozenset], dict[int, frozenset]]:
    """``({http port: config addresses}, {stream tcp port: config addresses})`` of a config.
    Stream servers that only run ``zone_sync`` are left out: that traffic stays in the model."""
    http: dict[int, set] = {}
    stream: dict[int, set] = {}
    if conf.http is not None:
        for s in conf.http.servers:
            for lst in s.listens:
                http.setdefault(lst.port, set()).add(lst.address)
    if conf.stream is not None:
        for s in conf.stream.servers:
            if getattr(s, "zone_sync", None) is not None and s.proxy_pass is None and s.return_text is None:
                continue
            for lst in s.listens:
                if not lst.udp:
                    stream.setdefault(lst.port, set()).add(lst.address)
    return ({p: frozenset(a) for p, a in http.items()}, {p: frozenset(a) for p, a in stream.items()})


def bind_address_for(node, index: int, *, port_offset: int | None, address_base: str | None) -> str:
    if port_offset is not None:
        return "127.0.0.1"
    if address_base is not None:
        return str(ipaddress.IPv4Address(address_base) + index)
    return node.address


def plan_bindings(cluster, *, port_offset: int | None = None, address_base: str | None = None) -> list[Binding]:
    """Every socket the served cluster needs, in node order."""
    out = []
    for index, node in enumerate(cluster.nodes.values()):
        out.extend(node_bindings(node, index, port_offset=port_offset, address_base=address_base))
    return out


def node_bindings(node, index: int, *, port_offset: int | None, address_base: str | None) -> list[Binding]:
    """The sockets of one node (the ``index``-th of its cluster)."""
    addr = bind_address_for(node, index, port_offset=port_offset, address_base=address_base)
    http, stream = node_ports(node.conf)
    out = []
    for kind, ports in (("http", http), ("stream", stream)):
        for port in sorted(ports):
            bport = port + port_offset * index if port_offset is not None else port
            out.append(Binding(node, kind, port, addr, bport, ports[port]))
    return out


def _listen_socket(b: Binding) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((b.bind_address, b.bind_port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        what = e.strerror or str(e)
        hint = ""
        if e.errno == 99:  # EADDRNOTAVAIL: this system routes only 127.0.0.1
            hint = " (this system has no such loopback address: try --port-offset)"
        elif e.errno == 13:
            hint = " (ports below 1024 need privileges: try --port-offset or other ports)"
        raise LiveError(
            f"node {b.node.name}: cannot listen on {b.bind_address}:{b.bind_port} ({b.kind}): {what}{hint}"
        ) from None
    sock.setblocking(False)
    return sock

