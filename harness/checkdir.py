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
    # TRANSITION: an area still held in one module, checks/<area>.py, is its own area.
    if path.parent.name == CHECKS_DIR.name and path.parent.parent == CHECKS_DIR.parent:
        return path.stem
    return path.parent.name


def check_id(path: Path, function: str) -> str:
    """``<area>.<name>`` for the function ``check_<name>`` in ``checks/<area>/….py``."""
    name = function[len(CHECK_PREFIX):] if function.startswith(CHECK_PREFIX) else function
    return f"{area_of(path)}.{name}"


def check_areas(checks_dir: Path = CHECKS_DIR) -> list[str]:
    """The promise areas: one folder each in ``checks/``."""
    folders = {p.name for p in checks_dir.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    # TRANSITION: areas still held in one module, checks/<area>.py.
    modules = {p.stem for p in checks_dir.glob("*.py") if not p.stem.startswith("_")}
    return sorted(folders | modules)


def area_path(area: str, checks_dir: Path = CHECKS_DIR) -> Path:
    """What pytest collects for one area."""
    folder = checks_dir / area
    return folder if folder.is_dir() else checks_dir / f"{area}.py"


def check_modules(checks_dir: Path = CHECKS_DIR) -> list[Path]:
    """Every module of every area that may hold a check, in a stable order."""
    found = []
    for area in check_areas(checks_dir):
        folder, module = checks_dir / area, checks_dir / f"{area}.py"
        # TRANSITION: while an area moves, its old module and its new folder may both hold checks.
        found += [module] if module.is_file() else []
        found += [p for p in folder.glob("*.py") if p.name not in NOT_CHECKS] if folder.is_dir() else []
    return sorted(found)


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
