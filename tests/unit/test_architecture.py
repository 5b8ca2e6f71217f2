"""The import rules of the layout: service -> explain <- training, service -> model_store <-
training, nothing upward, no cycle, and no torch where it does not belong.

Every import counts, including the ones inside functions (a lazy import is still a
dependency); only `if TYPE_CHECKING:` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("explain", "model_store", "service", "training", "bulk", "benchmarks")
# package -> the project packages it may import
ALLOWED = {
    "explain": set(),
    "model_store": set(),
    "service": {"explain", "model_store"},
    "training": {"explain", "model_store"},
    # Bulk work explains as the service does: its request model and loader, never training.
    "bulk": {"explain", "model_store", "service"},
    "benchmarks": {"explain", "model_store", "service", "training", "bulk"},
}
# package -> third-party modules it must never import
FORBIDDEN = {
    "explain": {"torch", "transformers", "fastapi", "pydantic_settings"},
    "model_store": {"torch", "transformers", "onnxruntime", "tokenizers", "fastapi"},
    "service": {"torch", "transformers"},
    "training": {"fastapi", "uvicorn"},
    "bulk": {"torch", "transformers"},
    "benchmarks": set(),
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> Iterator[str]:
    """Absolute module names imported anywhere in `tree` (TYPE_CHECKING blocks excluded)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.rsplit(".", node.level)[0]
                yield f"{base}.{node.module}" if node.module else base
            elif node.module:
                yield node.module
                yield from (f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()
GRAPH = {
    name: {imported for imported in _imports(ast.parse(path.read_text()), name)}
    for name, path in MODULES.items()
}


def test_every_package_has_modules() -> None:
    for package in PACKAGES:
        assert any(m.split(".")[0] == package for m in MODULES), package


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package: str) -> None:
    problems = []
    for module, imported in GRAPH.items():
        if module.split(".")[0] != package:
            continue
        for target in imported:
            top = target.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                problems.append(f"{module} imports {target}")
            if top in FORBIDDEN[package]:
                problems.append(f"{module} imports {target}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_no_import_cycle_between_modules() -> None:
    edges = {
        module: {t for t in imported if t in MODULES and t != module}
        for module, imported in GRAPH.items()
    }
    # A package's __init__ importing its own submodules is not a cycle with them.
    edges = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in edges.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


@pytest.mark.parametrize(
    "module",
    ["service.main", "explain.explainer", "explain.loading", "bulk.cli", "bulk.explain_job"],
)
def test_serving_code_never_loads_torch_or_training(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'training')); "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{module} loaded: {done.stdout}{done.stderr}"


def test_no_module_is_much_over_300_lines() -> None:
    long = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 360
    }
    assert not long, long
