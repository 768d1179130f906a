"""Simulated clients: arrival processes (arrivals), HTTP clients with URL popularity and sizes
(clients), stream clients (stream_clients) and keyval writers that feed the replication
checker (keyval_writers)."""
