"""Where the checks live and what they are called.

Every check is one module, ``checks/<area>/<name>.py``, holding one function
``check_<name>`` whose ``@pytest.mark.claims(...)`` marker names the catalogue
claims it verifies and whose ``@pytest.mark.access(...)`` marker names what it
needs to reach on the target (:data:`ACCESS`). Its id is ``<area>.<name>``.
This module is the one place that knows that layout: the plugin names results
with it, the command line selects areas and checks and lists them with it, and
the tests read the declared claims and access through it without importing any
check.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"
CHECK_PREFIX = "check_"
#: Files in an area's folder that hold no check.
NOT_CHECKS = frozenset({"__init__.py", "conftest.py"})

#: What a check may need to reach on the target, by the name its ``access`` marker uses, in the
#: order ``votriz-audit checks`` lists them. A profile that does not grant one makes the check
#: NOT_APPLICABLE or MANUAL, never PASS.
#: The markers a check module uses, as pytest registers them (``harness/checks.ini`` says the same).
MARKERS = ("claims(*ids): the catalogue claims a check verifies",
           "access(*kinds): what a check needs to reach on the target (harness.checkdir.ACCESS)")
ACCESS: dict[str, str] = {
    "edge": "the public TLS edge, as any client",
    "api": "canary accounts through the public API (tagged, removed at the end)",
    "database": "the database's read-only auditor role",
    "redis": "the service's Redis",
    "hsm": "HSM read: the token's user PIN",
    "processes": "the host's processes (/proc, or the Docker engine for containers)",
    "files": "the host's files: logs, backups, configuration, source",
    "docker": "the Docker engine (containers, networks, images)",
    "capture": "a capture of the service's outbound calls",
    "destructive": "destructive operations allowed: rotations, restarts, backups, drills",
    "attestation": "a human attestation file named by the profile",
}


@dataclass(frozen=True)
class DeclaredCheck:
    """A check as its module declares it, read from the source.

    Attributes:
        check_id: ``<area>.<name>``.
        path: the module that holds it.
        function: the name of its ``check_…`` function.
        claims: the claim ids of its ``claims`` marker, in order.
        access: the names of its ``access`` marker (keys of :data:`ACCESS`), in order.
    """

    check_id: str
    path: Path
    function: str
    claims: tuple[str, ...]
    access: tuple[str, ...] = ()

    @property
    def area(self) -> str:
        """The promise area it belongs to."""
        return area_of(self.path)


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


def _marker_args(node: ast.FunctionDef, marker: str) -> tuple[str, ...]:
    """The string arguments of the ``@pytest.mark.<marker>(...)`` decorator of ``node``."""
    for deco in node.decorator_list:
        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                and deco.func.attr == marker):
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
                found[ident] = DeclaredCheck(ident, module, node.name, _marker_args(node, "claims"),
                                             _marker_args(node, "access"))
    return found
