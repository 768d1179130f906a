"""The HTTP request path inside a node: the request, connection and worker objects (traffic),
server and location matching (routing), the proxy to upstreams (proxy) and proxy_cache zones
(cache)."""
