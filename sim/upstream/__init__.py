"""Upstream groups, shared by the http and stream sides: peers and their states with runtime
changes (upstream), peer selection by balancing method (balancer), and active health checks
(health)."""
