"""Every third-party module the server imports is a declared dependency.

The test environment has the test extra installed too, so a module missing
from ``[project.dependencies]`` would pass every other test and still break
``pip install -e . && callfs server`` (the README's first command).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("callfs_core", "callfs_adapters", "callfs_http", "callfs_cli")
# Contract suites for embedders: they need pytest, which embedders bring themselves.
TEST_ONLY = ROOT / "callfs_core" / "testing"


def _imported_modules() -> dict[str, str]:
    """Top-level module -> a file importing it, for every import in the packages."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if TEST_ONLY in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(spec).name.lower().replace("_", "-") for spec in project["dependencies"]}


def test_runtime_imports_are_declared_dependencies() -> None:
    distributions = packages_distributions()
    declared = _declared()
    missing = []
    for module, where in sorted(_imported_modules().items()):
        if module in sys.stdlib_module_names or module in PACKAGES or module == "__future__":
            continue
        owners = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        assert owners, f"{module} (imported by {where}) is not installed at all"
        if not owners & declared:
            missing.append(f"{module} ({where}): from {sorted(owners)}")
    assert missing == [], "imported but not in [project.dependencies]: " + "; ".join(missing)
