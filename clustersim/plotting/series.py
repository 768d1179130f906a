"""Series derived from a run's tables: rates from cumulative counters, sums over nodes,
peer-state matrices, health-check outcomes per interval and cache-status shares.

Everything here works on whole numpy columns; nothing loops over the points of a series in
Python. A counter that goes down between two samples was restarted (the node restarted, or
its statistics were reset through the API): the interval then counts the new value alone.
"""

from __future__ import annotations

import numpy as np

from clustersim.plotting.data import Table

#: Peer states as the API names them, in the order of the colour strip's legend.
PEER_STATES = ("up", "draining", "checking", "unhealthy", "unavail", "down")


def deltas(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """What a cumulative counter gained in each interval (the first from time 0)."""
    if not len(v):
        return v
    prev = np.concatenate(([0.0], v[:-1]))
    d = v - prev
    restarted = d < 0
    d[restarted] = v[restarted]
    return d


def intervals(t: np.ndarray) -> np.ndarray:
    """The length of each sampling interval in seconds (the first from time 0)."""
    if not len(t):
        return t
    dt = np.diff(t, prepend=0.0)
    dt[dt <= 0] = np.nan
    return dt


def rate(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-second rate of a cumulative counter over each interval."""
    return deltas(t, v) / intervals(t)


def sum_by_time(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values summed over every row that shares a sample time (the cluster's total)."""
    if not len(t):
        return t, v
    times, inv = np.unique(t, return_inverse=True)
    ok = ~np.isnan(v)
    total = np.bincount(inv[ok], weights=v[ok], minlength=len(times)).astype(float)
    seen = np.bincount(inv[ok], minlength=len(times)) > 0
    total[~seen] = np.nan
    return times, total


def max_by_time(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(t):
        return t, v
    times, inv = np.unique(t, return_inverse=True)
    out = np.full(len(times), -np.inf)
    ok = ~np.isnan(v)
    np.maximum.at(out, inv[ok], v[ok])
    out[np.isinf(out)] = np.nan
    return times, out


def peer_key(peer: str, server: str) -> str:
    """How a peer is labelled: its name, with the resolved address when they differ."""
    return peer if peer == server or not server else f"{peer} ({server})"


def upstream_groups(peers: Table) -> list[tuple[str, str, str]]:
    """(node, kind, upstream) of every upstream with sampled peers, in the order of the file."""
    if not len(peers):
        return []
    keys = np.char.add(np.char.add(peers["node"].astype(str), "\x1f"), np.char.add(
        np.char.add(peers["kind"].astype(str), "\x1f"), peers["upstream"].astype(str)))
    _, first = np.unique(keys, return_index=True)
    return [tuple(keys[i].split("\x1f")) for i in sorted(first)]


def peer_labels(tab: Table) -> np.ndarray:
    peer, server = tab["peer"].astype(str), tab["server"].astype(str)
    same = (peer == server) | (server == "")
    return np.where(same, peer, np.char.add(np.char.add(np.char.add(peer, " ("), server), ")")).astype(object)


class PeerSeries:
    """One upstream's peers on one node: a row per peer, a column per sample time."""

    def __init__(self, tab: Table):
        labels = peer_labels(tab).astype(str)
        self.times = np.unique(tab["time_s"])
        uniq, first, inv = np.unique(labels, return_index=True, return_inverse=True)
        order = np.argsort(first)  # peers in the order they first appear
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order))
        self.labels = [str(uniq[i]) for i in order]
        r = rank[inv] if len(labels) else np.array([], dtype=int)
        c = np.searchsorted(self.times, tab["time_s"])
        shape = (len(self.labels), len(self.times))
        states = tab["state"].astype(str)
        codes = np.full(len(states), float(len(PEER_STATES) - 1))
        for i, s in enumerate(PEER_STATES):
            codes[states == s] = i
        self.states = np.full(shape, np.nan)  # NaN: the peer did not exist (yet, or any more)
        self.states[r, c] = codes
        self.backup = {str(uniq[i]): bool(tab["backup"][first[i]] == 1.0) for i in order}

        def matrix(col: str) -> np.ndarray:
            m = np.full(shape, np.nan)
            m[r, c] = tab[col]
            return m

        self.requests = matrix("requests")
        self.fails = matrix("fails")
        self.checks = matrix("health_checks")
        self.check_fails = matrix("health_fails")

    def _deltas(self, m: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(m), 0.0, m)
        prev = np.concatenate((np.zeros((m.shape[0], 1)), filled[:, :-1]), axis=1)
        d = filled - prev
        d[d < 0] = filled[d < 0]
        d[np.isnan(m)] = np.nan
        return d

    def rate(self, m: np.ndarray) -> np.ndarray:
        return self._deltas(m) / intervals(self.times)[None, :]

    def share(self) -> np.ndarray:
        """Each peer's share of the upstream's requests in each interval (NaN when none)."""
        d = self._deltas(self.requests)
        total = np.nansum(d, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, d / np.where(total > 0, total, 1.0), np.nan)

    def health_marks(self) -> tuple[np.ndarray, np.ndarray]:
        """Per peer and interval: checks that passed, checks that failed."""
        checks = self._deltas(self.checks)
        fails = self._deltas(self.check_fails)
        return np.nan_to_num(checks - fails), np.nan_to_num(fails)


def cache_groups(caches: Table) -> list[tuple[str, str]]:
    if not len(caches):
        return []
    keys = np.char.add(np.char.add(caches["node"].astype(str), "\x1f"), caches["cache"].astype(str))
    _, first = np.unique(keys, return_index=True)
    return [tuple(keys[i].split("\x1f")) for i in sorted(first)]


def status_shares(tab: Table, statuses) -> dict[str, np.ndarray]:
    """Each cache status's share of the responses through the cache in each interval."""
    t = tab["time_s"]
    d = {s: deltas(t, tab[s]) for s in statuses}
    total = np.sum([np.nan_to_num(v) for v in d.values()], axis=0) if d else np.zeros(len(t))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {s: np.where(total > 0, v / np.where(total > 0, total, 1.0), np.nan) for s, v in d.items()}


def thin(x: np.ndarray, ys: list[np.ndarray], max_points: int = 3000) -> tuple[np.ndarray, list[np.ndarray]]:
    """Average consecutive points so that a series has at most ``max_points`` (a long run
    stays light in the browser); short series come back unchanged."""
    n = len(x)
    if n <= max_points:
        return x, ys
    k = -(-n // max_points)
    m = n // k * k
    xs = x[:m].reshape(-1, k)[:, 0]
    out = []
    for y in ys:
        block = y[:m].reshape(-1, k)
        with np.errstate(invalid="ignore"), _quiet():
            out.append(np.nanmean(block, axis=1))
    return xs, out


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)
