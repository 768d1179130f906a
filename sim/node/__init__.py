"""One NGINX Plus instance: built from its nginx.conf on start and reload (cycle), holding
connections, workers and zones, with the entry of the HTTP request path (node); it hosts the
http and stream sides and crashes, restarts and reloads as faults say."""
