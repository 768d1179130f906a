"""House rules that keep the layers apart (DESIGN.md section 1)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_SIM = {"api", "clustersim", "fastapi", "starlette", "uvicorn", "httpx", "locust", "pydantic_core"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_sim_never_imports_the_http_side():
    offenders = {}
    for path in sorted((ROOT / "sim").rglob("*.py")):
        bad = imported_modules(path) & FORBIDDEN_IN_SIM
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_sim_never_reads_the_wall_clock():
    offenders = []
    for path in sorted((ROOT / "sim").rglob("*.py")):
        text = path.read_text()
        for needle in ("time.time(", "time.monotonic(", "datetime.now(", "perf_counter(", "import random\n"):
            if needle in text:
                offenders.append(f"{path.name}: {needle.strip()}")
    assert offenders == []


def test_nothing_reads_the_shared_reference_folder():
    offenders = []
    for folder in ("sim", "api", "clustersim", "tests", "loadtests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")) if (ROOT / folder).exists() else []:
            if path.name == "test_layout.py":
                continue
            text = path.read_text()
            if "shared/" + "reference" in text or "../" + "shared" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# The import graph: no circles, and imports only go down the layers of docs/architecture.md

#: Lower number = lower layer. A module may import its own layer or any layer below it.
LAYERS = {
    "sim._native": 0,
    "sim.core": 0,
    "sim.conf": 1,
    "sim.zones": 2,
    "sim.upstream": 3,
    "sim.http": 4,
    "sim.stream": 4,
    "sim.node": 5,
    "sim.checks": 6,
    "sim.workload": 7,
    "sim.cluster": 8,
    "sim": 9,  # the package itself and the old-path modules kept for notebooks (sim.scenario, sim.replication)
    "api": 10,
    "clustersim": 11,
}
PACKAGES = ("sim", "api", "clustersim")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every import of one of our modules, at any depth (function-level ones too), resolved to
    the module it names: ``from sim.cluster import scenario`` is an edge to ``sim.cluster.scenario``."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            else:
                continue
            out.update(t for t in targets if t in modules and t != name)
        edges[name] = out
    return edges


def layer_of(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_sim_api_or_clustersim():
    assert find_cycle(import_edges(all_modules())) is None


def test_every_module_belongs_to_a_layer_and_imports_only_go_down():
    upward = []
    for module, targets in import_edges(all_modules()).items():
        here, level = layer_of(module)
        for target in targets:
            there, target_level = layer_of(target)
            if target_level > level:
                upward.append(f"{module} ({here}) -> {target} ({there})")
    assert upward == []


def test_each_subpackage_says_what_lives_there():
    for init in sorted((ROOT / "sim").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 12, init


def test_no_source_module_is_over_600_lines():
    long = {}
    for pkg in (*PACKAGES, "loadtests", "benchmarks"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > 600:
                long[str(path.relative_to(ROOT))] = lines
    assert long == {}
