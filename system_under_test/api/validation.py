"""Checks on request input: every field a handler reads goes through one of these."""

from __future__ import annotations

import re

from system_under_test.api.passwords import MAX_BYTES

PLATFORMS = ("instagram", "linkedin", "twitter", "tiktok", "youtube")
MAX_ID = 2**63 - 1
# A pragmatic address check: one @, no spaces, a dot in the domain.
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class ApiError(Exception):
    """A request the API refuses; becomes ``{"error": message}`` with ``status``.

    Attributes:
        status: the HTTP status code.
        message: the text of the error, safe to show (never input echoed back).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def text_field(body: dict[str, object], name: str, *, max_len: int, min_len: int = 1,
               required: bool = True) -> str | None:
    """Return ``body[name]`` as a string of ``min_len``..``max_len`` characters."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string")
    if not min_len <= len(value) <= max_len:
        raise ApiError(400, f"{name} must have {min_len} to {max_len} characters")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail there.
        raise ApiError(400, f"{name} must not contain NUL characters")
    return value


def required_text(body: dict[str, object], name: str, *, max_len: int, min_len: int = 1) -> str:
    """Like ``text_field`` for a field that must be present."""
    value = text_field(body, name, max_len=max_len, min_len=min_len)
    assert value is not None  # required=True never returns None
    return value


def email_field(body: dict[str, object]) -> str:
    """The ``email`` field, checked for shape, trimmed and lower-cased."""
    email = required_text(body, "email", max_len=254, min_len=3).strip().lower()
    if not _EMAIL_RE.match(email):
        raise ApiError(400, "email is not a valid address")
    return email


def password_field(body: dict[str, object], *, new: bool) -> str:
    """The ``password`` field; new passwords need 8 characters, all fit bcrypt's 72 bytes."""
    password = required_text(body, "password", max_len=1024, min_len=8 if new else 1)
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise ApiError(400, f"password must be at most {MAX_BYTES} bytes")
    return password


def platform_field(body: dict[str, object]) -> str:
    """The ``platform`` field, one of the five supported platforms."""
    platform = body.get("platform")
    if not isinstance(platform, str) or platform not in PLATFORMS:
        raise ApiError(400, f"platform must be one of {', '.join(PLATFORMS)}")
    return platform


def path_id(raw: str) -> int:
    """A row id from the URL path; anything else is a 404, as the row cannot exist."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        raise ApiError(404, "not found")
    return int(raw)
