"""Fault switches: each makes the reference service break exactly one promise.

``votriz-audit up --fault NAME`` starts the service with a fault on. The
registry, ``faults.toml`` beside this module (one table a fault), says what each
fault breaks in the service's own words (the claims of the published page, the
layer that applies it); it names no check of the auditor. Which checks are
expected to FAIL under which fault is the auditor's business:
``fixtures/calibration.toml``, read by ``votriz-audit calibrate``.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path


class Layer(enum.StrEnum):
    """Which part of the reference service applies a fault."""

    EDGE = "edge"  # nginx configuration
    API = "api"  # the application (api.toml ``faults``)
    OPS = "ops"  # rotation, backup and drill commands
    STACK = "stack"  # how the backend starts processes or containers


@dataclass(frozen=True)
class Fault:
    """One way to break one promise.

    Attributes:
        name: the switch, as given to ``up --fault``.
        claims: ids of the claims (fixtures/claims) it breaks.
        layer: which part applies it.
        description: what the service does wrong, in one sentence.
        backends: backends on which it can be applied.
    """

    name: str
    claims: tuple[str, ...]
    layer: Layer
    description: str
    backends: tuple[str, ...] = ("local", "docker")


def load_faults(text: str) -> dict[str, Fault]:
    """The faults of a fault table (``faults.toml``'s text), in its order.

    Raises:
        ValueError: the text is not TOML, or a fault lacks a field, has an unknown one or an
            unknown layer.
    """
    faults: dict[str, Fault] = {}
    for name, row in tomllib.loads(text).items():
        unknown = sorted(set(row) - {"claims", "layer", "description", "backends"})
        if unknown:
            raise ValueError(f"fault {name}: unknown field(s) {', '.join(unknown)}")
        try:
            faults[name] = Fault(name, tuple(row["claims"]), Layer(row["layer"]), row["description"],
                                 tuple(row.get("backends", ("local", "docker"))))
        except KeyError as missing:
            raise ValueError(f"fault {name}: no {missing.args[0]}") from None
        except ValueError:
            raise ValueError(f"fault {name}: unknown layer {row['layer']!r}; known: "
                             f"{', '.join(Layer)}") from None
    return faults


FAULTS_PATH = Path(__file__).with_name("faults.toml")
FAULTS: dict[str, Fault] = load_faults(FAULTS_PATH.read_text(encoding="utf-8"))


def api_layer_faults(faults: Collection[str]) -> list[str]:
    """The faults the API and the ops commands apply themselves (api.toml's list), sorted."""
    return sorted(f for f in faults if FAULTS[f].layer in (Layer.API, Layer.OPS))


def validate_faults(faults: Sequence[str], backend: str) -> tuple[str, ...]:
    """The faults, deduplicated and sorted; ValueError naming the known ones, or those the backend
    cannot apply, otherwise."""
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(FAULTS))}")
    not_here = sorted(f for f in set(faults) if backend not in FAULTS[f].backends)
    if not_here:
        raise ValueError(f"fault(s) {', '.join(not_here)} cannot be applied by the {backend} backend")
    return tuple(sorted(set(faults)))
