"""Live mode: the simulated cluster served on loopback, in step with the wall clock.

Everything runs on one asyncio loop and one thread: a pacer task advances the simpy environment
to the sim time the wall clock (times a speed factor) has reached, and the nodes' sockets feed
real requests into the same model. Nothing here sleeps inside the model, and no other thread
touches it (see DESIGN.md section 4). The parts:

* :mod:`api.live.pacer`: :class:`Pacer`, the only code that advances the model, and its
  :class:`LagStats`.
* :mod:`api.live.listen`: where each node listens (:class:`~api.live.listen.Binding`), planned
  from its config, and binding those sockets (a port in use is a :class:`LiveError` naming the
  node, address and port).
* :mod:`api.live.http`: the HTTP/1.1 wire on asyncio protocols, parsed by httptools (llhttp):
  keep-alive, pipelining, ``Content-Length`` and chunked bodies read piece by piece, ``Expect:
  100-continue``, and nginx's timeouts. One TCP connection is one client connection of the node
  (:meth:`sim.node.node.Node.open_conn`); a request is an :class:`api.live.request.HttpRequest`.
  A request that ends on the wire (refused, timed out, its client gone) is counted in the node
  by :func:`sim.node.refused.refuse`, as nginx logs it.
* :mod:`api.live.rules`: nginx's rules for a request's head around the parser (the header
  buffers, the request line's methods and bare LF, the URI as locations see it, ``Host``);
  :mod:`api.live.pages`: nginx's status lines and error pages.
* :mod:`api.live.asgi`: one request through an ASGI app (a node's API app, the control app).
* :mod:`api.live.frontend`: the data plane of one node. Each request is handed to the pacer,
  which injects it at ``env.now`` right after advancing the clock, through
  :meth:`sim.node.node.Node.handle`; the client gets the simulated status and a body of the
  simulated size when the simulated response completes. ``api`` locations reach the node's
  FastAPI app and ``root``/``alias`` locations the disk through the node's ``api_hook``, so
  every live request counts in the node's counters like a simulated one. A TCP connection to a
  stream server's port is one stream session through the model; see docs/live.md for what the
  client receives.
* :mod:`api.live.cluster`: :class:`LiveCluster` binds everything, runs the pacer and stops
  cleanly; :func:`serve` runs it until asked to stop.
* control (:mod:`api.control`): a JSON app on its own port that lists nodes, reports sim time
  and pacer lag, and injects faults.
"""

from api.live.cluster import LiveCluster, serve
from api.live.listen import LiveError
from api.live.pacer import LagStats, Pacer

__all__ = ["LagStats", "LiveCluster", "LiveError", "Pacer", "serve"]
