"""The runtime under every model object: the simpy environment and its fast lane (eventq),
sim time and its conversions (clock), seeded random streams and batched draws (rng, dists), and the
model's exceptions (errors). Nothing here knows nginx.conf or any NGINX module."""
