"""The code's shape, checked: imports point one way (runtime <- options <- train <- export <-
benchmarks <- the command line), the runtime holds no command-line code, no module imports
itself back round a cycle, and units stay small."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# maskdepth.<first name> -> its layer; a module may import its own layer and the ones below.
# maskdepth.options (the options dataclasses' command-line metadata) sits above the runtime,
# which holds only what an application imports, and below every layer that declares options.
LAYERS = {"runtime": 0, "options": 1, "train": 2, "export": 3, "benchmarks": 4}
TOP = 5  # maskdepth's own modules: the CLI, its commands, the public API, doctor
# The package root holds the version and names it loads on first use (strings, not imports),
# so every layer may read ``maskdepth.__version__``.
ROOT_PACKAGE = -1
FOLDERS = {"runtime": "runtime", "train": "train", "export": "export", "benchmarks": "benchmarks",
           "maskdepth": "maskdepth"}  # fmt: skip
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
LONG_FILE_MARK = "# long file:"  # first lines of a file over the limit: "# long file: <why>"


@functools.cache
def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (the symlinked folders counted once)."""
    found = {}
    for name, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_symlink() or any(
                p.is_symlink()
                for p in path.relative_to(ROOT).parents
                if p != Path(".") and (ROOT / p).is_symlink()
            ):
                continue  # fmt: skip
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            dotted = ".".join(("maskdepth",) + (() if name == "maskdepth" else (name,)) + parts)
            found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``module`` imports anywhere in its file (lazy imports too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        targets |= {n for n in names if n in known and n != module}
    return targets


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else ROOT_PACKAGE


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def test_imports_point_one_way():
    wrong = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
             for m, targets in _graph().items() for t in sorted(targets)
             if _layer(t) > _layer(m)]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_the_runtime_holds_no_command_line_code():
    """maskdepth.runtime is what an application imports; the CLI's parsing lives above it."""
    parsing = []
    for module, path in _modules().items():
        if _layer(module) != LAYERS["runtime"]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            parsing += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n == "argparse"]
    assert "maskdepth.runtime.predictor" in _modules()  # the walk sees the runtime
    assert not parsing, "argparse in the runtime: " + ", ".join(parsing)


def test_no_import_cycles_between_modules():
    """Packages' own ``__init__`` re-exports are left out: importing a name from a package is
    not a cycle when the package only forwards it."""
    graph = {m: {t for t in ts if not _is_package(t)} for m, ts in _graph().items()
             if not _is_package(m)}  # fmt: skip
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def _is_package(module: str) -> bool:
    return _modules()[module].name == "__init__.py"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative over a small graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _source_files() -> list[Path]:
    return sorted(set(_modules().values()))


@pytest.mark.parametrize("limit", [MAX_FILE_LINES])
def test_files_are_short_or_say_why(limit):
    long = []
    for path in _source_files():
        lines = path.read_text().splitlines()
        if len(lines) > limit and not any(LONG_FILE_MARK in line for line in lines[:15]):
            long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not long, f"over {limit} lines without a '{LONG_FILE_MARK}' reason:\n" + "\n".join(long)


def test_functions_are_short():
    long = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length}")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_checks_see_the_whole_package():
    """The walk must find every layer, or the checks above would pass on nothing."""
    graph = _graph()
    assert {_layer(m) for m in graph} == {ROOT_PACKAGE, 0, 1, 2, 3, 4, TOP}
    assert "maskdepth.runtime.predictor" in graph and len(graph) > 60
    assert "maskdepth.runtime.errors" in graph["maskdepth.runtime.predictor"]


def test_modules_import_the_package_by_its_installed_names():
    """``import runtime`` works from a checkout but not from the installed wheel."""
    bare = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            bare += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                     if n.split(".")[0] in LAYERS]  # fmt: skip
    assert not bare, "\n".join(bare)
