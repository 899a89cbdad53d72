"""Violations: promises broken by hand in a RUNNING reference stack, as an auditor would break them.

A fault (``system_under_test.faults``) is a start-up switch: ``up`` builds the
service wrong. A violation is applied after ``up`` to the service as it runs
-- a row edited by SQL, a file planted in the backup store, an object created
in the HSM, an nginx configuration edited and reloaded, a line in a log --
through :class:`~system_under_test.violations.stack.RunningStack`. Only
behaviour on the real state can catch one, never a switch's name.

Each area module of this package (``edge``, ``rows``, ...) exposes a
``VIOLATIONS`` tuple of :class:`Violation`; :data:`VIOLATIONS` is all of them
by name. Which checks must FAIL on each, and which claims it breaks, is data:
``fixtures/calibration.toml``'s ``[violations.NAME]`` tables (a test keeps
both lists the same). The modules are found by listing the package, so
adding an area is one module; a module that fails to import, exposes no
``VIOLATIONS`` or repeats a name stops the import with that error.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from system_under_test.violations.stack import RunningStack

# Modules of this package that are not areas.
_NOT_AREAS = frozenset({"stack", "__main__"})
BACKENDS = ("local", "docker")


@dataclass(frozen=True)
class Violation:
    """One violation an auditor applies to a running stack.

    Attributes:
        name: its stable name (``calibrate --violation NAME``).
        description: what is done to the running service, in one sentence.
        apply: does it, through the accessor; raises (StackError, psycopg/PKCS#11/OS errors)
            when it could not, so that calibration never audits a stack it failed to break.
        backends: the backends it can be applied to (default: both).
    """

    name: str
    description: str
    apply: Callable[[RunningStack], None]
    backends: tuple[str, ...] = BACKENDS


def _collect() -> dict[str, Violation]:
    found: dict[str, Violation] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
        if info.name in _NOT_AREAS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        try:
            entries: tuple[Violation, ...] = module.VIOLATIONS
        except AttributeError:
            raise ImportError(f"{module.__name__} exposes no VIOLATIONS tuple") from None
        for violation in entries:
            if violation.name in found:
                raise ImportError(f"violation {violation.name!r} is defined twice "
                                  f"(again in {module.__name__})")
            found[violation.name] = violation
    return found


VIOLATIONS: dict[str, Violation] = _collect()

__all__ = ["BACKENDS", "VIOLATIONS", "RunningStack", "Violation"]
