"""Time series sampled from the model, for reports, plots and notebooks.

Every ``sample_interval`` the sampler reads each node's counters and records one row per node:
cumulative counters, the rates and latency percentiles of the interval just ended (from the
difference of the node's latency histogram), and gauges (connections, upstream peers up, cache
size). Rows are plain dicts, written as CSV by the driver.
"""

from __future__ import annotations

from simpy.events import Timeout

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
)


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


class Sampler:
    def __init__(self, cluster, interval_ms: float):
        self.cluster = cluster
        self.interval = interval_ms
        self.rows: list[dict] = []
        self._prev: dict[str, tuple[int, list[int], int, dict]] = {}

    def start(self) -> None:
        ev = Timeout(self.cluster.env, self.interval)
        ev.callbacks.append(self._tick)

    def _tick(self, _ev) -> None:
        self.sample()
        ev = Timeout(self.cluster.env, self.interval)
        ev.callbacks.append(self._tick)

    def sample(self) -> None:
        env = self.cluster.env
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
            peers_up = peers_total = 0
            now = env.now
            for up in node.upstreams.values():
                for p in up.peers:
                    peers_total += 1
                    if p.state_at(now) == "up":
                        peers_up += 1
            hits = lookups = size = 0
            cache_now = {}
            for cname, c in node.caches.items():
                st = c.stats
                h = st["hit"]["responses"]
                lk = sum(st[k]["responses"] for k in ("hit", "miss", "expired", "stale", "updating", "revalidated"))
                cache_now[cname] = (h, lk)
                ph, pl = prev_cache.get(cname, (0, 0))
                if h < ph or lk < pl:  # statistics were reset
                    ph = pl = 0
                hits += h - ph
                lookups += lk - pl
                size += c.size
            zs = node.zone_sync
            self.rows.append(
                {
                    "time_s": round(now / 1000.0, 3),
                    "node": name,
                    "requests_total": total,
                    "requests_per_s": round(d_req * 1000.0 / self.interval, 3),
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
                }
            )
            self._prev[name] = (total, list(hist.counts), hist.n, cache_now)
