"""Violations of stored rows: one existing (not the audit's) row changed by SQL as the superuser.

Each targets the oldest row the service itself wrote (the demo seed's), so a
check that only follows the rows the audit creates cannot see it.
"""

from __future__ import annotations

import secrets

from system_under_test.violations import Violation
from system_under_test.violations.stack import RunningStack, StackError


def _changed(rows: list[tuple[object, ...]], what: str) -> None:
    if not rows:
        raise StackError(f"no {what} row to change: the stack holds none")


def plaintext_access_token(stack: RunningStack) -> None:
    """The oldest channel's ``access_token_enc`` becomes a plaintext, token-shaped value."""
    token = "IGQVJ" + secrets.token_urlsafe(48)  # the shape of an Instagram access token
    _changed(stack.sql("UPDATE channels SET access_token_enc = %s "
                       "WHERE id = (SELECT min(id) FROM channels) RETURNING id", (token,)), "channel")


def bcrypt_cost_10(stack: RunningStack) -> None:
    """The oldest user's ``password_hash`` becomes a valid bcrypt hash of cost 10."""
    import bcrypt

    weak = bcrypt.hashpw(secrets.token_urlsafe(16).encode("ascii"), bcrypt.gensalt(rounds=10))
    _changed(stack.sql("UPDATE users SET password_hash = %s "
                       "WHERE id = (SELECT min(id) FROM users) RETURNING id",
                       (weak.decode("ascii"),)), "user")


VIOLATIONS = (
    Violation("row-token-plaintext", "one existing channel's access_token_enc is overwritten "
              "by SQL with a plaintext access token", plaintext_access_token),
    Violation("row-bcrypt-cost-10", "one existing user's password_hash is replaced by SQL "
              "with a bcrypt hash of cost 10", bcrypt_cost_10),
)
