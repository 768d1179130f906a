"""Time series sampled from the model, for reports, plots and notebooks.

Every ``sample_interval`` the sampler reads the model's counters and records three tables:

- ``rows``, one dict per node (columns :data:`COLUMNS`): cumulative counters, the rates and
  latency percentiles of the interval just ended (from the difference of the node's latency
  histogram), what the node's clients offered and got served in the interval, and gauges
  (connections, upstream peers up, cache size, zone_sync status);
- ``peer_rows``, one tuple per upstream peer per node (:data:`PEER_COLUMNS`): the peer's state
  as the API shows it, its cumulative requests and failures, and its health-check counters;
- ``cache_rows``, one tuple per cache zone per node (:data:`CACHE_COLUMNS`): size, max_size and
  the cumulative responses of each cache status.

Rows are plain Python values, written as CSV by the driver (timeseries.csv, peers.csv,
caches.csv). A crashed node has a node row (its gauges empty) but no peer or cache rows.
"""

from __future__ import annotations

from simpy.events import Timeout

from sim.http.cache import STAT_FIELDS
from sim.http.traffic import LAT_BOUNDS

COLUMNS = (
    "time_s",
    "node",
    "requests_total",
    "requests_per_s",
    "responses_2xx",
    "responses_3xx",
    "responses_4xx",
    "responses_5xx",
    "latency_p50_ms",
    "latency_p99_ms",
    "connections_active",
    "connections_idle",
    "peers_up",
    "peers_total",
    "cache_hit_ratio",
    "cache_size",
    "zone_sync_nodes_online",
    "zone_sync_records_pending",
    # added after the first release; readers of older files find them missing
    "latency_p95_ms",
    "offered_per_s",
    "served_per_s",
)

#: One row per peer of every upstream (http and stream) of a running node.
PEER_COLUMNS = (
    "time_s",
    "node",
    "kind",  # "http" or "stream"
    "upstream",
    "peer",  # the server as written (the API's ``name``)
    "server",  # the resolved address (the API's ``server``)
    "backup",
    "state",
    "requests",  # for a stream upstream: connections
    "fails",
    "unavail",
    "active",
    "health_checks",
    "health_fails",
    "health_last_passed",  # True, False, or None before the first check
)

#: One row per cache zone of a running node; the status columns are cumulative responses.
CACHE_COLUMNS = ("time_s", "node", "cache", "size", "max_size", "cold", *STAT_FIELDS)

_LOOKUPS = ("hit", "miss", "expired", "stale", "updating", "revalidated")


def _quantile(counts: list[int], n: int, q: float) -> float | None:
    if n <= 0:
        return None
    target = q * n
    acc = 0
    for i, c in enumerate(counts):
        acc += c
        if c and acc >= target:
            return LAT_BOUNDS[min(i, len(LAT_BOUNDS) - 1)]
    return LAT_BOUNDS[-1]


def _r3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _upstreams(node):
    for up in node.upstreams.values():
        yield "http", up
    if node.stream is not None:
        for up in node.stream.upstreams.values():
            yield "stream", up


class Sampler:
    def __init__(self, cluster, interval_ms: float):
        self.cluster = cluster
        self.interval = interval_ms
        self.rows: list[dict] = []
        self.peer_rows: list[tuple] = []
        self.cache_rows: list[tuple] = []
        self._prev: dict[str, tuple[int, list[int], int, dict]] = {}
        self._prev_clients: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        ev = Timeout(self.cluster.env, self.interval)
        ev.callbacks.append(self._tick)

    def _tick(self, _ev) -> None:
        self.sample()
        ev = Timeout(self.cluster.env, self.interval)
        ev.callbacks.append(self._tick)

    def _clients(self, name: str) -> tuple[int, int]:
        """Requests the node's workload clients sent and got an answer to, so far."""
        sent = completed = 0
        for w in self.cluster.workloads:
            st = w.stats.get(name)
            if st is not None:
                sent += st.sent
                completed += st.completed
        return sent, completed

    def sample(self) -> None:
        env = self.cluster.env
        now = env.now
        t = round(now / 1000.0, 3)
        per_s = 1000.0 / self.interval
        for name, node in self.cluster.nodes.items():
            hist = node.latency
            total = node.requests_total
            classes = [0, 0, 0, 0, 0]
            for z in node.server_zones.values():
                for i, v in enumerate(z.responses):
                    classes[i] += v
            prev_total, prev_counts, prev_n, prev_cache = self._prev.get(name, (0, [0] * len(hist.counts), 0, {}))
            diff = [a - b for a, b in zip(hist.counts, prev_counts, strict=True)]
            dn = hist.n - prev_n
            if dn < 0:  # the node restarted: its histogram began again
                diff, dn = list(hist.counts), hist.n
            d_req = total - prev_total if total >= prev_total else total
            sent, completed = self._clients(name)
            prev_sent, prev_completed = self._prev_clients.get(name, (0, 0))
            peers_up = peers_total = 0
            for kind, up in _upstreams(node):
                for p in up.peers:
                    state = p.state_at(now)
                    if kind == "http":
                        peers_total += 1
                        if state == "up":
                            peers_up += 1
                    if node.up:
                        self.peer_rows.append((
                            t, name, kind, up.name, p.name, p.server, p.backup, state,
                            p.requests if kind == "http" else p.connections, p.fails,
                            p.unavail, p.active, p.hc_checks, p.hc_fails, p.hc_last_passed,
                        ))
            hits = lookups = size = 0
            cache_now = {}
            for cname, c in node.caches.items():
                st = c.stats
                h = st["hit"]["responses"]
                lk = sum(st[k]["responses"] for k in _LOOKUPS)
                cache_now[cname] = (h, lk)
                ph, pl = prev_cache.get(cname, (0, 0))
                if h < ph or lk < pl:  # statistics were reset
                    ph = pl = 0
                hits += h - ph
                lookups += lk - pl
                size += c.size
                if node.up:
                    self.cache_rows.append((t, name, cname, c.size, c.max_size, c.cold,
                                            *(st[f]["responses"] for f in STAT_FIELDS)))
            zs = node.zone_sync
            self.rows.append(
                {
                    "time_s": t,
                    "node": name,
                    "requests_total": total,
                    "requests_per_s": round(d_req * per_s, 3),
                    "responses_2xx": classes[1],
                    "responses_3xx": classes[2],
                    "responses_4xx": classes[3],
                    "responses_5xx": classes[4],
                    "latency_p50_ms": _r3(_quantile(diff, dn, 0.5)),
                    "latency_p99_ms": _r3(_quantile(diff, dn, 0.99)),
                    "connections_active": node.connections_active,
                    "connections_idle": node.connections_idle,
                    "peers_up": peers_up,
                    "peers_total": peers_total,
                    "cache_hit_ratio": round(hits / lookups, 4) if lookups else None,
                    "cache_size": size,
                    "zone_sync_nodes_online": zs.nodes_online if zs is not None and node.up else None,
                    "zone_sync_records_pending": zs.records_pending_total() if zs is not None and node.up else None,
                    "latency_p95_ms": _r3(_quantile(diff, dn, 0.95)),
                    "offered_per_s": round((sent - prev_sent) * per_s, 3),
                    "served_per_s": round((completed - prev_completed) * per_s, 3),
                }
            )
            self._prev[name] = (total, list(hist.counts), hist.n, cache_now)
            self._prev_clients[name] = (sent, completed)
