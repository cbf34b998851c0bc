"""Every repository path the README and the Python sources cite (in strings, comments, help
texts and messages) exists: a script moved to ``benchmarks/scripts/`` or a module renamed leaves
no stale pointer behind.

Three kinds of citation are checked, each matched precisely enough never to flag prose:

- a file path under one of the repository's folders, e.g. ``benchmarks/scripts/gpu_check.py``
  (a last part with a suffix: ``train/val`` is a split, not a path; ``{}`` and ``*`` are
  patterns and skipped);
- a conventional root document, e.g. ``DESIGN.md`` (the design notes live outside the repo);
- a dotted name inside the package, e.g. ``maskdepth.benchmarks.scripts.photo_set`` or
  ``maskdepth.train.data.augment.preset``: the longest module prefix must exist, and what
  follows it must be a name that module defines (``maskdepth.stride``-style metadata keys, whose
  second part is no module of ours, are not module references and are skipped).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("runtime", "train", "export", "benchmarks", "maskdepth", "tests")
FOLDERS = (*CODE, "docs", ".ci")
LAYERS = {"runtime", "train", "export", "benchmarks"}  # maskdepth.<name> -> the folder <name>/
ROOT_DOCS = ("README", "DESIGN", "STYLE", "CHANGELOG", "CONTRIBUTING", "LICENSE", "SECURITY")

_FOLDER = "|".join(re.escape(f) for f in FOLDERS)
PATH = re.compile(rf"(?<![\w./-])((?:{_FOLDER})/[\w./{{}}*-]*\w)")
ROOT_DOC = re.compile(rf"(?<![\w./-])((?:{'|'.join(ROOT_DOCS)})\.md)\b")
DOTTED = re.compile(r"(?<![\w.])maskdepth(?:\.\w+)+")


def _sources() -> list[Path]:
    """README.md and every Python file of the checkout, the package's symlinked folders once
    (this file left out: its examples of stale citations are stale on purpose)."""
    files = [ROOT / "README.md"]
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            inside = path.relative_to(ROOT).parents
            own = path == Path(__file__).resolve()
            if not own and not any((ROOT / p).is_symlink() for p in inside if p != Path(".")):
                files.append(path)
    return files


def _module_file(dotted: str) -> Path | None:
    parts = dotted.split(".")
    layered = len(parts) > 1 and parts[1] in LAYERS
    base = ROOT / parts[1] if layered else ROOT / "maskdepth"
    path = base.joinpath(*parts[2 if layered else 1 :])
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


@functools.cache
def _defined(path: Path) -> frozenset[str]:
    """Top-level names of a module: definitions, assignments, imports and ``__all__``."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                names |= {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def _dotted_problem(dotted: str) -> str | None:
    parts = dotted.split(".")
    if _module_file(".".join(parts[:2])) is None:
        return None  # maskdepth.<not a module>: a metadata key such as maskdepth.stride
    k = max(k for k in range(2, len(parts) + 1) if _module_file(".".join(parts[:k])))
    module = _module_file(".".join(parts[:k]))
    assert module is not None
    if k == len(parts) or parts[k] in _defined(module):
        return None
    return f"{dotted}: {module.relative_to(ROOT)} defines no {parts[k]}"


def _problems(text: str) -> list[str]:
    found = []
    for match in PATH.finditer(text):
        path = match.group(1).rstrip(".")
        last = path.rsplit("/", 1)[-1]
        if "." in last.strip(".") and not any(c in path for c in "{}*"):
            found += [] if (ROOT / path).exists() else [f"{path}: no such file"]
    for match in ROOT_DOC.finditer(text):
        if not (ROOT / match.group(1)).is_file():
            found.append(f"{match.group(1)}: not in the repository")
    found += [p for m in DOTTED.finditer(text) if (p := _dotted_problem(m.group(0)))]
    return found


def test_every_cited_repository_path_exists():
    stale = [
        f"{path.relative_to(ROOT)}:{number}: {problem}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for problem in _problems(line)
    ]
    assert not stale, "stale references:\n" + "\n".join(stale)


def test_the_check_finds_what_it_is_for():
    """The matcher flags each kind of stale citation, and none of the look-alikes."""
    assert _problems("see benchmarks/onnx_profile.py and DESIGN.md") == [
        "benchmarks/onnx_profile.py: no such file",
        "DESIGN.md: not in the repository",
    ]
    assert _problems("run python -m maskdepth.benchmarks.onnx_profile") == [
        "maskdepth.benchmarks.onnx_profile: benchmarks/__init__.py defines no onnx_profile"
    ]
    assert _problems("maskdepth.runtime.predictor.NoSuchThing") == [
        "maskdepth.runtime.predictor.NoSuchThing: runtime/predictor.py defines no NoSuchThing"
    ]
    fine = (
        "the train/val split, runs/demo/report.md, OUT/stage{i}-{size}/, maskdepth.stride, "
        "benchmarks/scripts/onnx_profile.py, `python -m maskdepth.benchmarks.scripts.photo_set`, "
        "maskdepth.runtime.Predictor, maskdepth.train.data.augment.preset, README.md."
    )
    assert _problems(fine) == []
    sources = _sources()
    assert len(sources) > 100 and ROOT / "README.md" in sources
    assert {ROOT / "runtime" / "predictor.py", ROOT / "tests" / "conftest.py"} <= set(sources)
