"""The repository's own rules, checked: imports point down the floors, and no text names one machine's folders.

The floors are stated once, as import-linter's layers contract in pyproject.toml (docs/architecture.md);
``lint-imports`` checks it. A second rule is checked by walking the syntax tree, so it holds even where
import-linter is not installed: inside a function, a library module imports only heavy optional third-party
packages, never snapsight's own modules (a hidden import keeps a cycle and hides it). Only the CLI
(``snapsight/cli.py``, ``snapsight/commands/``) imports lazily, to keep ``--help`` fast. The walk sees import
statements; the package's lazy public names (``snapsight.__getattr__``, through ``importlib``) are not one.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "snapsight"
LAZY_IMPORTS_ALLOWED = ("snapsight/cli.py", "snapsight/commands/")

# Tracked text that a user reads or runs: commands, defaults and provenance must work from any checkout.
SCANNED = ("README.md", "Makefile", "pyproject.toml", ".ci/", "docs/", "configs/", "benchmarks/", "scripts/",
           "snapsight/")
MACHINE_FOLDER = re.compile(r"(?<![\w.~-])/(work|root|home|tmp)/")
# Nothing needs a machine's folder today. An entry here is "path: why it must stay".
MACHINE_FOLDER_ALLOWED: dict[str, str] = {}


def _own_module(node: ast.Import | ast.ImportFrom) -> str | None:
    """The snapsight module an import statement names, or None for a third-party or standard one."""
    if isinstance(node, ast.ImportFrom):
        if node.level > 0:
            return "." * node.level + (node.module or "")
        return node.module if (node.module or "").split(".")[0] == "snapsight" else None
    names = [a.name for a in node.names if a.name.split(".")[0] == "snapsight"]
    return names[0] if names else None


def imports_inside_functions(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, function, module) of every import of a snapsight module inside a function body (any depth)."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, getattr(child, "name", "<lambda>"))
                continue
            if function and isinstance(child, (ast.Import, ast.ImportFrom)):
                module = _own_module(child)
                if module:
                    found.append((child.lineno, function, module))
            visit(child, function)

    visit(tree, None)
    return found


def test_the_in_function_import_check_finds_what_it_should():
    src = '''
import os
from . import top                      # module level: fine
def f():
    import numpy                       # third party: fine
    from .data import images           # own module, relative
    class C:
        def g(self):
            import snapsight.train.loop  # own module, absolute, nested
    return os
'''
    found = imports_inside_functions(ast.parse(src))
    assert [(line, fn) for line, fn, _ in found] == [(6, "f"), (9, "g")]
    assert [m for *_, m in found] == [".data", "snapsight.train.loop"]


def test_library_modules_import_snapsight_only_at_the_top():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(LAZY_IMPORTS_ALLOWED):
            continue
        for line, function, module in imports_inside_functions(ast.parse(path.read_text(), filename=rel)):
            offenders.append(f"{rel}:{line} in {function}(): import {module}")
    assert not offenders, ("snapsight modules imported inside functions (import them at the top; a higher "
                           "floor's module means the code is on the wrong floor):\n" + "\n".join(offenders))


def _contract_layers() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def test_every_module_of_the_package_is_on_a_floor():
    # A module left out of the contract could import anything, from any floor.
    on_floors = {m.strip() for layer in _contract_layers() for m in re.split(r"[|:]", layer)}
    top_level = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
                 if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").is_file()}
    assert top_level - {m.split(".")[1] for m in on_floors} == set(), "add these to [tool.importlinter] layers"


def test_import_floors_hold():
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                               "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "Contracts:" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]  # the contract really ran
    assert run.returncode == 0, "an import points up a floor (pyproject.toml [tool.importlinter]):\n" + run.stdout


def _tracked_text_files() -> list[str]:
    """Text files under SCANNED that git tracks or would track (binary weights and pictures left out)."""
    try:
        # tracked files, and new ones not yet added (what the next commit will hold), minus what git ignores
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SCANNED],
                             cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for rel in filter(None, out.decode().split("\0")):
        path = REPO / rel
        if path.is_symlink() or not path.is_file():  # configs/*.yaml link to snapsight/recipes/, scanned there
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:  # text only: weights and pictures are binary
            files.append(rel)
    return files


def test_the_machine_folder_pattern_matches_what_it_should():
    for text in ("--out /work/runs/x", "`/tmp/a`", "(/root/.cache)", "/home/me/photos", '"/work/runs"'):
        assert MACHINE_FOLDER.search(text), text
    for text in ("runs/work/x", "~/photos", "/usr/share/datasets/", "/data/hf-ds", "snapsight/work/", "~/tmp/x"):
        assert not MACHINE_FOLDER.search(text), text


def test_no_tracked_text_names_a_machine_folder():
    files = _tracked_text_files()
    assert "README.md" in files and any(f.startswith("snapsight/") for f in files)
    hits = []
    for rel in files:
        if rel in MACHINE_FOLDER_ALLOWED:
            continue
        for number, line in enumerate((REPO / rel).read_text(errors="replace").splitlines(), 1):
            if MACHINE_FOLDER.search(line):
                hits.append(f"{rel}:{number}: {line.strip()[:120]}")
    assert not hits, "use relative paths (runs/...) instead of one machine's folders:\n" + "\n".join(hits)
