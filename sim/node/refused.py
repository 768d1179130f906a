"""A request the wire refused: counted in a node as nginx finalizes and logs it.

nginx creates a request when the first byte of it arrives, and a request it refuses while
reading it (a bad head, 414, a 413 decided from the head, a timeout, the client gone) is
finalized and logged like any other. The live server (:mod:`api.live`) decides those before a
request reaches :meth:`sim.node.node.Node.handle`, and reports each one here.
"""

from __future__ import annotations

from typing import Any

from sim.http.traffic import ClientConn


def refuse(node: Any, conn: ClientConn, server: int | None, status: int, bytes_in: int, bytes_out: int,
           location_zone: str | None = None) -> None:
    """Count a request ``node`` ended on the wire, on connection ``conn``: in its worker's
    requests, in the zone of server block ``server`` (the default server of the address and
    port while ``Host`` was not known) and, once a location was chosen, in the location zone
    named ``location_zone``. With ``bytes_out == 0`` (nothing was sent: a 408, a client gone)
    the request is ``discarded``; otherwise it is a response with ``status`` (as sent: nginx's
    494 goes out as 400). It begins and ends at once, so ``current`` and ``processing`` are
    what they were. Nothing happens on a closed connection or a node that is down."""
    if not conn.open or not node.up:
        return
    w = conn.worker
    if conn.idle_since is not None:  # a kept-alive connection reading its next request
        conn.idle_since = None
        w.idle -= 1
        w.active += 1
    conn.requests += 1
    w.requests_total += 1
    zones = []
    server_zones = node.routes.server_zone_of
    if server is not None and 0 <= server < len(server_zones) and server_zones[server] is not None:
        zones.append(server_zones[server])
    if location_zone is not None and location_zone in node.location_zones:
        zones.append(node.location_zones[location_zone])
    for zone in zones:
        zone.requests += 1
        zone.received += bytes_in
        if bytes_out > 0:
            zone.respond(status, bytes_out)
        else:
            zone.discarded += 1
