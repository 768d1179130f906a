"""One NGINX Plus instance: built from its nginx.conf on start and reload (cycle), holding
connections, workers and zones, with the entry of the HTTP request path (node), its routing memo
(route), the proxy cache's share of that path (upstream_cache), the nginx variables (variables)
the slab accounting of its shared memory (shm) and the counting of requests the
live wire refused before the model saw them (refused); it hosts the http and stream sides and
crashes, restarts and reloads as faults say."""
