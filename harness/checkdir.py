"""Where the checks live and what they are called.

Every check is one module, ``checks/<area>/<name>.py``, holding one function
``check_<name>`` whose ``@pytest.mark.claims(...)`` marker names the catalogue
claims it verifies. Its id is ``<area>.<name>``. This module is the one place
that knows that layout: the plugin names results with it, the command line
selects areas and checks with it, and the tests read the declared claims
through it without importing any check.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"
CHECK_PREFIX = "check_"
#: Files in an area's folder that hold no check.
NOT_CHECKS = frozenset({"__init__.py", "conftest.py"})


@dataclass(frozen=True)
class DeclaredCheck:
    """A check as its module declares it, read from the source.

    Attributes:
        check_id: ``<area>.<name>``.
        path: the module that holds it.
        function: the name of its ``check_…`` function.
        claims: the claim ids of its ``claims`` marker, in order.
    """

    check_id: str
    path: Path
    function: str
    claims: tuple[str, ...]


def area_of(path: Path) -> str:
    """The promise area of a check module: the folder it sits in under ``checks/``."""
    return path.parent.name


def check_id(path: Path, function: str) -> str:
    """``<area>.<name>`` for the function ``check_<name>`` in ``checks/<area>/….py``."""
    name = function[len(CHECK_PREFIX):] if function.startswith(CHECK_PREFIX) else function
    return f"{area_of(path)}.{name}"


def check_areas(checks_dir: Path = CHECKS_DIR) -> list[str]:
    """The promise areas: one package folder each in ``checks/``."""
    return sorted(p.name for p in checks_dir.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def area_path(area: str, checks_dir: Path = CHECKS_DIR) -> Path:
    """What pytest collects for one area: its folder."""
    return checks_dir / area


def check_modules(checks_dir: Path = CHECKS_DIR) -> list[Path]:
    """Every module of every area that may hold a check, in a stable order."""
    return sorted(module for area in check_areas(checks_dir)
                  for module in (checks_dir / area).glob("*.py") if module.name not in NOT_CHECKS)


def stray_modules(checks_dir: Path = CHECKS_DIR) -> list[Path]:
    """Modules directly in ``checks/`` besides its ``__init__.py``: in no area, so no check's home."""
    return sorted(p for p in checks_dir.glob("*.py") if p.name != "__init__.py")


def _claims_of(node: ast.FunctionDef) -> tuple[str, ...]:
    for deco in node.decorator_list:
        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                and deco.func.attr == "claims"):
            return tuple(arg.value for arg in deco.args
                         if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    return ()


def declared_checks(checks_dir: Path = CHECKS_DIR) -> dict[str, DeclaredCheck]:
    """Every check of ``checks_dir`` by id, read from the source (no check is imported)."""
    found: dict[str, DeclaredCheck] = {}
    for module in check_modules(checks_dir):
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith(CHECK_PREFIX):
                ident = check_id(module, node.name)
                found[ident] = DeclaredCheck(ident, module, node.name, _claims_of(node))
    return found
