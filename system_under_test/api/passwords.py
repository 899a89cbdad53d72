"""bcrypt hashing of passwords, MFA backup codes and recovery tokens."""

from __future__ import annotations

import bcrypt

COST = 12
# The bcrypt-cost-10 fault's cost.
WEAK_COST = 10
# bcrypt only reads 72 bytes; bcrypt 5 raises past that, older versions truncate.
MAX_BYTES = 72


def hash_secret(secret: str, cost: int = COST) -> str:
    """Hash ``secret`` with bcrypt at ``cost``; the caller has checked its length."""
    return bcrypt.hashpw(secret.encode("utf-8"), bcrypt.gensalt(rounds=cost)).decode("ascii")


def secret_matches(secret: str, hashed: str) -> bool:
    """Tell whether ``secret`` matches the bcrypt ``hashed`` (False on a malformed hash)."""
    data = secret.encode("utf-8")
    if len(data) > MAX_BYTES:
        return False
    try:
        return bcrypt.checkpw(data, hashed.encode("ascii"))
    except ValueError:
        return False
