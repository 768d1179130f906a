"""What the load tests' checkers share: HTTP reads of the control endpoint and the nodes' APIs,
waiting for a condition, and a verdict that sets locust's exit code.

HTTP only (the standard library's urllib, which locust's gevent makes cooperative): nothing here
imports the simulator, so a checker judges the served cluster exactly as an outside client
would. Each load test's ``--host`` is the control endpoint of ``clustersim serve``.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request

API_VERSION = 9


class HttpError(Exception):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def request(method: str, url: str, body=None, timeout: float = 10.0, headers: dict | None = None):
    """``(status, parsed JSON or text)`` of one request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def get_json(url: str):
    status, body = request("GET", url)
    if status != 200:
        raise HttpError(status, body)
    return body


class Cluster:
    """The served cluster as the control endpoint describes it."""

    def __init__(self, control_url: str):
        self.control = control_url.rstrip("/")
        self.refresh()

    def refresh(self) -> None:
        self.nodes = get_json(self.control + "/nodes")
        self.by_name = {n["name"]: n for n in self.nodes}

    @property
    def names(self) -> list[str]:
        return [n["name"] for n in self.nodes]

    def api_base(self, node: str) -> str:
        """``http://addr:port/api/9`` of a node (its first ``api`` location)."""
        apis = self.by_name[node]["api"]
        if not apis:
            raise LookupError(f"node {node} has no api location")
        return f"{apis[0]['url']}/{API_VERSION}"

    def api(self, node: str, path: str):
        return get_json(self.api_base(node) + path)

    def api_request(self, method: str, node: str, path: str, body=None):
        return request(method, self.api_base(node) + path, body)

    def data_url(self, node: str, port: int) -> str:
        """Base URL of the node's data-plane socket for config port ``port``."""
        for b in self.by_name[node]["listens"]:
            if b["kind"] == "http" and b["config_port"] == port:
                return b["url"]
        raise LookupError(f"node {node} does not listen on port {port}")

    def fault(self, **fault) -> dict:
        status, body = request("POST", self.control + "/faults", fault)
        if status != 200:
            raise HttpError(status, body)
        return body

    def heal(self, **fault) -> dict:
        status, body = request("POST", self.control + "/faults/heal", fault)
        if status != 200:
            raise HttpError(status, body)
        return body

    def time(self) -> dict:
        return get_json(self.control + "/time")


def wait_until(predicate, timeout: float, interval: float = 0.1):
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Verdict:
    """The checker's findings; :meth:`finish` prints them and sets locust's exit code."""

    def __init__(self, name: str):
        self.name = name
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.facts: dict = {}

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return ok

    def equal(self, actual, expected, what: str) -> bool:
        return self.check(actual == expected, f"{what}: expected {expected}, got {actual}")

    def note(self, message: str) -> None:
        self.notes.append(message)

    @property
    def passed(self) -> bool:
        return not self.failures

    def finish(self, environment) -> None:
        for n in self.notes:
            print(f"CHECK note: {n}", flush=True)
        for f in self.failures[:50]:
            print(f"CHECK FAIL: {f}", flush=True)
        if len(self.failures) > 50:
            print(f"CHECK FAIL: ... and {len(self.failures) - 50} more", flush=True)
        verdict = "PASS" if self.passed else "FAIL"
        print(f"CHECK {verdict}: {self.name}", flush=True)
        print("CHECK-REPORT " + json.dumps({"name": self.name, "passed": self.passed, "failures": self.failures,
                                            "facts": self.facts}), flush=True)
        environment.process_exit_code = 0 if self.passed else 1


def run_checker(environment, name: str, fn) -> Verdict:
    """Run ``fn(verdict)``; an exception is a failed check, never a crash of locust."""
    verdict = Verdict(name)
    try:
        fn(verdict)
    except Exception as e:  # the checker itself broke: the run cannot be trusted
        verdict.check(False, f"checker error: {type(e).__name__}: {e}")
    verdict.finish(environment)
    return verdict


# ---------------------------------------------------------------------------------------------
# keyval writes through the API, remembered for the last-write-wins check


class KeyvalLedger:
    """The last value the users wrote to each key (each key is written by one user at a time, so
    client order is time order, and with no clock offsets last-write-wins keeps the last one)."""

    def __init__(self, zone: str, side: str = "stream"):
        self.zone = zone
        self.side = side
        self.last: dict[str, str] = {}
        self.writes = 0
        self.failures: list[str] = []

    def path(self) -> str:
        return f"/{self.side}/keyvals/{self.zone}"

    def write(self, client, base: str, key: str, value: str) -> bool:
        """PATCH the key on the node at ``base`` (an API base URL), POST it when the node does not
        have it yet; ``client`` is a locust HttpUser's client."""
        url = base + self.path()
        body = {key: value}
        for method in ("PATCH", "POST", "PATCH"):
            with client.request(method, url, json=body, name=f"{method} keyval", catch_response=True) as r:
                code = r.status_code or 0
                if code in (201, 204):
                    r.success()
                    self.last[key] = value
                    self.writes += 1
                    return True
                if (method == "PATCH" and code == 404) or (method == "POST" and code == 409):
                    r.success()  # not there yet / already there: try the other method
                    continue
                r.failure(f"{code}")
                self.failures.append(f"{method} {url} {key}: {code} {r.text[:200] if r.text else ''}")
                return False
        self.failures.append(f"{url} {key}: no method succeeded")
        return False


def zone_sync_status(cluster: Cluster, node: str) -> dict:
    return cluster.api(node, "/stream/zone_sync")


def records_pending(status: dict) -> int:
    return sum(z.get("records_pending", 0) for z in (status.get("zones") or {}).values())


def keyval_contents(cluster: Cluster, node: str, path: str, prefix: str) -> dict:
    return {k: v for k, v in cluster.api(node, path).items() if k.startswith(prefix)}


def write_random_key(client, cluster: Cluster, ledger: KeyvalLedger, keys: list[str], seq: int) -> bool:
    """One keyval write of a user: one of its keys, on a random node, with a unique value."""
    node = random.choice(cluster.names)
    key = random.choice(keys)
    return ledger.write(client, cluster.api_base(node), key, f"{node}-{seq}-{random.randrange(10**6)}")


def converged_keyvals(cluster: Cluster, ledger: KeyvalLedger, prefix: str, *, full_mesh: bool = False):
    """``(contents, statuses)`` once every node has ``records_pending`` 0 (and, with ``full_mesh``,
    sees every other node online) and all hold the same pairs under ``prefix``; else None."""
    statuses = {n: zone_sync_status(cluster, n) for n in cluster.names}
    n_nodes = len(cluster.names)
    for s in statuses.values():
        if records_pending(s) or (full_mesh and s["status"]["nodes_online"] != n_nodes):
            return None
    contents = [keyval_contents(cluster, n, ledger.path(), prefix) for n in cluster.names]
    if any(c != contents[0] for c in contents[1:]):
        return None
    return contents[0], statuses
