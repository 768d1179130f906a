"""``error_page``: where an error nginx answers itself goes instead (docs/config.md).

:func:`respond_error` is the node's way to answer with an error status: the request's location
(or, when no location matched, its server) may name the status in an ``error_page``, and then
the request is redirected internally to a URI or a named location, or the client is sent to a
URL. A redirected request stays in the server and location zones it came in by and is counted
once, when it is finally answered (docs/decisions.md).
"""

from __future__ import annotations

from sim.http.traffic import Request


def respond_error(node, req: Request, status: int, nbytes: int = 0) -> None:
    """An error nginx answers itself (or an upstream's error under proxy_intercept_errors):
    sent as it is, or, when an ``error_page`` in effect names ``status``, redirected."""
    loc = req.loc
    if loc is not None:
        pages = loc.error_pages
    elif req.server is not None:
        pages = node.routes.router.servers[req.server].error_pages
    else:
        pages = ()
    if pages and not req.error_page_done and _follow(node, req, pages, status):
        return
    req.err_status = 0  # an error in the location redirected to is sent as it is
    node.respond(req, status, nbytes)


def _follow(node, req: Request, pages, status: int) -> bool:
    """Follow the first ``error_page`` naming ``status``, as nginx's special response
    handler does: an internal redirect to a URI or a named location (the request goes on in
    that location, under the same server and location zones, without the preaccess limits
    again), or a redirect of the client to a URL. False when no page names ``status``."""
    page = None
    for p in pages:
        if status in p.codes:
            page = p
            break
    if page is None or req.final:
        return False
    loc = req.loc
    if loc is None or not loc.recursive_error_pages:
        req.error_page_done = True
    uri = page.uri
    response = page.response
    if not uri.startswith(("/", "@")):
        # a URL: the client is sent there, with 302 unless the page names a redirect code
        req.err_status = 0
        code = response if response in (301, 302, 303, 307, 308) else 302
        node.respond(req, code, 0)
        return True
    req.redirects += 1
    if req.redirects > 10:  # nginx: "rewrite or internal redirection cycle"
        req.err_status = 0
        node.respond(req, 500, 0)
        return True
    req.err_status = status if response is None else (0 if response == -1 else response)
    if req.method not in ("GET", "HEAD"):
        req.method = "GET"
    router = node.routes.router
    si = req.server
    new_loc = None
    if si is not None:
        new_loc = router.named_location(si, uri) if uri[0] == "@" else router.location_for(si, uri)
    if new_loc is None and uri[0] == "@":
        req.err_status = 0
        node.respond(req, 500, 0)  # nginx: "could not find named location"
        return True
    # what the last location began is over: its upstream attempt, its cache lookup
    req.attempt = None
    req.cache_status = None
    req.cache_key = None
    req.cache_entry = None
    req.tried = None
    req.upstream = None
    req.loc = new_loc
    if new_loc is None:
        respond_error(node, req, 404)
    else:
        node._dispatch(req, new_loc)
    return True
