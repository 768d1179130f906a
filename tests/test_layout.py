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
