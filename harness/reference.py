"""The reference service, as the auditor sees it: backends found through an entry-point group.

The reference service (``votriz-reference``, package ``system_under_test``) is
a separate distribution. It registers its backends under the entry-point
group ``votriz_audit.reference_backends``; ``votriz-audit up``, ``down``,
``faults``, ``calibrate`` and ``run`` without ``--target`` use them from here.
The auditor never imports the reference service: it only knows the shape of
what the entry points give (:class:`ReferenceBackend`). A backend breaks a
promise in two ways: a fault switched on at ``up`` (:class:`ReferenceFault`),
or a violation applied afterwards to the running service
(:class:`ReferenceViolation`, ``apply_violation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

ENTRY_POINT_GROUP = "votriz_audit.reference_backends"
INSTALL_HINT = ("the reference service is not installed (it is the separate distribution "
                "votriz-reference): pip install -e ./system_under_test, or ./dev install")


class ReferenceNotInstalled(Exception):
    """No distribution registers a backend of the reference service (the message says how to install it)."""


class ReferenceSwitch(Protocol):
    """What a fault and a violation of the reference service both have, as the auditor lists them."""

    @property
    def name(self) -> str:
        """The switch (``up --fault NAME``, ``calibrate --violation NAME``)."""
        ...

    @property
    def description(self) -> str:
        """What the service does wrong, or what is done to it, in one sentence."""
        ...

    @property
    def backends(self) -> tuple[str, ...]:
        """Names of the backends that can apply it."""
        ...


class ReferenceFault(ReferenceSwitch, Protocol):
    """One fault switch of the reference service, switched on at ``up``."""

    @property
    def claims(self) -> tuple[str, ...]:
        """Ids of the claims it breaks."""
        ...


class ReferenceViolation(ReferenceSwitch, Protocol):
    """One violation the reference service can apply to a running stack."""


class StartedStack(Protocol):
    """What a backend's ``up`` returns, as far as the auditor needs it."""

    @property
    def profile_path(self) -> Path:
        """The stack's target profile."""
        ...


class Availability(Protocol):
    """Whether a backend can run on this machine, and why."""

    @property
    def ok(self) -> bool:
        """It can."""
        ...

    @property
    def reason(self) -> str:
        """Why it can or cannot (one line)."""
        ...


class ReferenceBackend(Protocol):
    """One backend of the reference service (``system_under_test.backends.Backend``)."""

    @property
    def name(self) -> str:
        """Its name (``--backend NAME``)."""
        ...

    @property
    def marker(self) -> str:
        """The file its ``up`` leaves in a state directory."""
        ...

    @property
    def StackError(self) -> type[Exception]:
        """What ``up`` and ``down`` raise when a step fails."""
        ...

    def up(self, state_dir: Path, faults: Sequence[str] = ()) -> StartedStack:
        """Stand the service up under ``state_dir`` with ``faults`` on."""
        ...

    def down(self, state_dir: Path) -> None:
        """Take down what ``up`` made in ``state_dir``."""
        ...

    def faults(self) -> tuple[ReferenceFault, ...]:
        """The faults it can apply."""
        ...

    def violations(self) -> tuple[ReferenceViolation, ...]:
        """The violations it can apply to a stack it started."""
        ...

    def apply_violation(self, state_dir: Path, name: str) -> None:
        """Apply violation ``name`` to the running stack in ``state_dir`` (``StackError`` if it could not)."""
        ...

    def availability(self) -> Availability:
        """Whether it can run here, and why."""
        ...


def reference_backends() -> dict[str, ReferenceBackend]:
    """Every registered backend by name.

    Raises:
        ReferenceNotInstalled: no distribution registers one.
    """
    found: dict[str, ReferenceBackend] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        backend: ReferenceBackend = entry.load()
        found[entry.name] = backend
    if not found:
        raise ReferenceNotInstalled(INSTALL_HINT)
    return found


def all_faults(backends: Iterable[ReferenceBackend]) -> list[ReferenceFault]:
    """Every fault any backend can apply, once each, in the order the backends list them.

    A fault only some backends apply keeps its place: it goes right after the
    fault its own backend lists before it.
    """
    merged: list[ReferenceFault] = []
    for backend in backends:
        previous: str | None = None
        for fault in backend.faults():
            names = [known.name for known in merged]
            if fault.name not in names:
                merged.insert(names.index(previous) + 1 if previous is not None else 0, fault)
            previous = fault.name
    return merged
