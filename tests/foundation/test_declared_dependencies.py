"""Every distribution our code imports is declared in pyproject.toml, not merely installed by another one."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = {"billing", "api"}
# Only the wheel's packages: tests/ and bench/ may use dev dependencies.
SOURCES = ("billing", "api")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        _normal(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])
        for requirement in project["dependencies"]
    }


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> the first file importing it."""
    found: dict[str, str] = {}
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    distributions = packages_distributions()
    undeclared = []
    for module, where in sorted(_imported_top_levels().items()):
        if module in OWN or module in sys.stdlib_module_names:
            continue
        owners = {_normal(name) for name in distributions.get(module, [module])}
        if not owners & declared:
            undeclared.append(f"{module} (imported by {where}; distribution {sorted(owners)})")
    assert undeclared == []
