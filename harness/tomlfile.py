"""Reading the harness's TOML inputs into validated models, with one precise line per problem.

Profiles, policies, the claims catalogue, waivers and the checks' data files
are all read here, so every one of them reports a bad file the same way:
``FILE: key.path[index].name: what is wrong``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

import annotated_types
from pydantic import BaseModel, ValidationError

from harness.safe_files import Cap, FileRefused, read_text

M = TypeVar("M", bound=BaseModel)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("waiver", 0, "expires")`` → ``waiver[0].expires``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


#: Error types about a number, whose line also states the field's allowed range.
_NUMBER_ERRORS = ("finite_number", "less_than", "greater_than", "int_", "float_")
_BOUND_SIGNS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
                (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="))


def field_range(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The bounds declared on the field at ``loc`` of ``model`` (``> 0 and <= 86400``), or ``""``."""
    current: type[BaseModel] | None = model
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return ""
        info = current.model_fields[part]
        annotation = info.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if info is None:
        return ""
    bounds = [f"{sign} {getattr(item, attr)}" for item in info.metadata
              for kind, attr, sign in _BOUND_SIGNS if isinstance(item, kind)]
    return " and ".join(bounds)


def validation_lines(source: str, exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One ``SOURCE: key.path: message`` line per validation error; a number out of bounds
    (or not finite) also names the field's allowed range."""
    lines = []
    for err in exc.errors():
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if model is not None and err["type"].startswith(_NUMBER_ERRORS):
            bounds = field_range(model, err["loc"])
            if bounds:
                msg += f" (allowed: a finite number {bounds})"
        lines.append(f"{source}: {key_path(err['loc']) or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_toml_model(text: str, model: type[M], *, source: str, error: type[Exception]) -> M:
    """Parse TOML text into ``model``; any problem raises ``error`` with one line per problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(validation_lines(source, exc, model)) from None


def load_toml_model(path: Path, model: type[M], *, what: str, error: type[Exception]) -> M:
    """Read the TOML file at ``path`` into ``model``; ``what`` names it in messages (e.g. ``policy``).

    The file is read by :func:`harness.safe_files.read_text`: a FIFO, a device, a
    directory or a file over :attr:`Cap.TOML` bytes is refused in one line, never read.
    """
    try:
        text = read_text(path, what, Cap.TOML)
    except FileRefused as exc:
        raise error(f"{path}: cannot read the {what}: {exc.reason}") from None
    return parse_toml_model(text, model, source=str(path), error=error)
