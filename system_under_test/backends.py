"""The reference service's backends, by name: one registry, as pytest-testinfra keeps its own.

Each backend stands the whole service up under a state directory and takes
it down again; ``BACKENDS`` maps its name to it. The auditor finds this
registry through the entry-point group ``votriz_audit.reference_backends``
(this distribution's ``pyproject.toml``), never by importing the package.
Adding a backend is one module with ``up``/``down``/``MARKER`` plus one line
here and one in ``pyproject.toml``.

Importing this module is cheap: a backend's own modules (psycopg, the Docker
SDK, the PKI) are imported when it is first used.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from system_under_test.common.host import StackError
from system_under_test.faults import FAULTS, Fault

# Bound on applying one violation (a reload, a few statements, an HSM object).
VIOLATION_TIMEOUT_S = 120.0


class StackInfo(Protocol):
    """What ``up`` returns, as far as a caller outside the backend needs it."""

    @property
    def profile_path(self) -> Path:
        """``STATE/target.toml``: the target profile of the stack."""
        ...


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and why (one line, said to the user).

    Attributes:
        ok: it can.
        reason: why it can or cannot.
    """

    ok: bool
    reason: str


class Backend(Protocol):
    """One way to run the reference service.

    Attributes:
        name: its name (``--backend NAME``).
        marker: the file ``up`` leaves in a state directory; ``down`` removes only such a directory.
        StackError: what ``up`` and ``down`` raise when a step fails (one clear line).
    """

    @property
    def name(self) -> str: ...
    @property
    def marker(self) -> str: ...
    @property
    def StackError(self) -> type[Exception]: ...

    def up(self, state_dir: Path, faults: Sequence[str] = ()) -> StackInfo:
        """Stand the service up under ``state_dir`` with ``faults`` on; ValueError for a bad fault."""
        ...

    def down(self, state_dir: Path) -> None:
        """Take down what ``up`` made in ``state_dir`` and remove it."""
        ...

    def faults(self) -> tuple[Fault, ...]:
        """The faults it can apply, in the registry's order."""
        ...

    def availability(self) -> Availability:
        """Whether it can run on this machine, with the reason."""
        ...

    def violations(self) -> tuple[ViolationEntry, ...]:
        """The violations it can apply to a running stack (``system_under_test.violations``)."""
        ...

    def apply_violation(self, state_dir: Path, name: str) -> None:
        """Apply violation ``name`` to the running stack in ``state_dir``; StackError if it could not."""
        ...


@dataclass(frozen=True)
class ViolationEntry:
    """A violation as a caller outside the reference service sees it.

    Attributes:
        name: its name.
        description: what is done to the running service.
        backends: the backends it applies to.
    """

    name: str
    description: str
    backends: tuple[str, ...]


@dataclass(frozen=True)
class ModuleBackend:
    """A backend whose ``up``, ``down`` and ``MARKER`` live in one module, imported on first use.

    Attributes:
        name: the backend's name.
        module: the module's dotted name.
        marker: its ``MARKER`` (repeated here so that ``down`` can tell whose a directory
            is without importing every backend).
    """

    name: str
    module: str
    marker: str
    StackError: type[Exception] = StackError

    def _stack(self) -> ModuleType:
        return importlib.import_module(self.module)

    def up(self, state_dir: Path, faults: Sequence[str] = ()) -> StackInfo:
        """Stand the service up (see :class:`Backend`)."""
        info: StackInfo = self._stack().up(state_dir, faults)
        return info

    def down(self, state_dir: Path) -> None:
        """Take it down (see :class:`Backend`)."""
        self._stack().down(state_dir)

    def faults(self) -> tuple[Fault, ...]:
        """The registry's faults this backend can apply."""
        return tuple(fault for fault in FAULTS.values() if self.name in fault.backends)

    def violations(self) -> tuple[ViolationEntry, ...]:
        """The registry's violations this backend can apply, in the registry's order."""
        from system_under_test.violations import VIOLATIONS

        return tuple(ViolationEntry(v.name, v.description, v.backends)
                     for v in VIOLATIONS.values() if self.name in v.backends)

    def apply_violation(self, state_dir: Path, name: str) -> None:
        """Apply one violation to the running stack in ``state_dir``, in a child process.

        A child, because PKCS#11 is initialised once per process for one stack's HSM.

        Raises:
            ValueError: ``name`` is not a violation of this backend.
            StackError: the child could not apply it (its one line), or overran its bound.
        """
        if name not in {v.name for v in self.violations()}:
            raise ValueError(f"unknown violation for the {self.name} backend: {name}")
        argv = [sys.executable, "-m", "system_under_test.violations", "apply", name,
                "--state-dir", str(state_dir)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=VIOLATION_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise self.StackError(f"violation {name} not applied within "
                                  f"{VIOLATION_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise self.StackError(f"violation {name} not applied: {last}")

    def availability(self) -> Availability:
        """Local processes need nothing checked in advance (``up`` names a missing package)."""
        return Availability(True, "the reference service runs as local processes")


@dataclass(frozen=True)
class DockerBackend(ModuleBackend):
    """The Docker backend: it needs an engine that answers, root, and mmdebstrap for its images."""

    def availability(self) -> Availability:
        """Whether an engine answers and the images can be built here, and why not."""
        try:
            docker: Any = importlib.import_module("docker")
            client = docker.from_env(timeout=5)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:  # the SDK raises many kinds; all mean "no engine here"
            return Availability(False, f"no Docker engine answers: {type(exc).__name__}")
        if os.geteuid() != 0:
            return Availability(False, "a Docker engine answers, but the docker backend needs root")
        if shutil.which("mmdebstrap") is None:
            return Availability(False, "a Docker engine answers, but mmdebstrap (to build its base "
                                       "images) is missing")
        return Availability(True, "a Docker engine answers: the reference service runs as containers")


LOCAL = ModuleBackend(name="local", module="system_under_test.local.stack", marker=".votriz-local-stack")
DOCKER = DockerBackend(name="docker", module="system_under_test.docker.stack", marker=".votriz-docker-stack")

BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (LOCAL, DOCKER)}
