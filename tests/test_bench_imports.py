"""The benchmarks in bench/ import the code they measure inside functions, which only a run
would reach: every name they take from the dashboard package must exist (a moved module broke
one once)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def dashboard_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every `from dashboard… import name` in a script."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dashboard":
            found.extend((node.lineno, node.module, alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_exists(script):
    """Each imported module loads and holds the name (or the name is its submodule)."""
    missing = []
    for line, module, name in dashboard_imports(script):
        loaded = importlib.import_module(module)
        if hasattr(loaded, name):
            continue
        try:
            importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            missing.append(f"{script.name}:{line} from {module} import {name}")
    assert not missing
