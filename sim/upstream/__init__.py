"""Upstream groups, shared by the http and stream sides: the group with its selection and runtime
changes (upstream), one server's state and counters (peer), the API's server-object rules
(servers), peer selection by balancing method (balancer), and active health checks (health)."""
