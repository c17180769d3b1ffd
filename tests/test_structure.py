"""Architecture rules that a reader should not have to check by hand."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: command lines: the two CLIs, and the demo's ``python -m batquant.demo`` entry point
CLI_MODULES = {ROOT / "mxref" / "cli", ROOT / "batquant" / "cli.py",
               ROOT / "batquant" / "demo" / "__main__.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_library_module_imports_argparse():
    offenders = []
    for package in ("mxref", "batquant"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if any(path == c or c in path.parents for c in CLI_MODULES):
                continue
            if "argparse" in imported_modules(path):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], "argparse belongs in the CLI packages only"
