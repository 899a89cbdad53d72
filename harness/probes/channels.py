"""The ``channels`` table as the auditor reads it: ids and stored ciphertexts, never plaintext.

The key checks read it to prove which key the stored OAuth tokens are
encrypted under (``keys.hsm_custody``) and to see every row across a
token-key rotation (``keys.token_key_rotation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.database import DatabaseProbe
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@dataclass(frozen=True)
class ChannelRow:
    """One ``channels`` row as the auditor reads it (ciphertexts only).

    Attributes:
        id: the row id.
        brand_id: its brand.
        access_token_enc, refresh_token_enc: the stored Fernet tokens (None if NULL).
    """

    id: int
    brand_id: int
    access_token_enc: str | None
    refresh_token_enc: str | None


def read_channel_rows(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                      *, brand_id: int | None = None, limit: int | None = None) -> list[ChannelRow]:
    """Channels rows as the auditor role (all, one brand's, or the first ``limit``).

    Raises:
        ProbeError: the database cannot be reached or the table cannot be read.
    """
    query = "SELECT id, brand_id, access_token_enc, refresh_token_enc FROM channels"
    params: tuple[Any, ...] = ()
    if brand_id is not None:
        query += " WHERE brand_id = %s"
        params = (brand_id,)
    query += " ORDER BY id"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    with DatabaseProbe(profile, policy, known_secrets=known_secrets) as probe:
        try:
            with probe.connection.cursor() as cursor:
                cursor.execute(query, params)
                rows = cursor.fetchall()
        except psycopg.Error as exc:
            raise ProbeError(f"cannot read the channels table: {type(exc).__name__}") from None
    return [ChannelRow(int(r[0]), int(r[1]), r[2], r[3]) for r in rows]
