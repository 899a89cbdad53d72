"""Reading the harness's TOML inputs into validated models, with one precise line per problem.

Profiles, policies, the claims catalogue, waivers and the checks' data files
are all read here, so every one of them reports a bad file the same way:
``FILE: key.path[index].name: what is wrong``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("waiver", 0, "expires")`` → ``waiver[0].expires``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_lines(source: str, exc: ValidationError) -> str:
    """One ``SOURCE: key.path: message`` line per validation error."""
    lines = []
    for err in exc.errors():
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
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
        raise error(validation_lines(source, exc)) from None


def load_toml_model(path: Path, model: type[M], *, what: str, error: type[Exception]) -> M:
    """Read the TOML file at ``path`` into ``model``; ``what`` names it in messages (e.g. ``policy``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: the {what} is not UTF-8 text") from None
    return parse_toml_model(text, model, source=str(path), error=error)
