"""at_rest.tokens_fernet: the OAuth tokens of every channel row are Fernet per row.

Every cell of ``channels.access_token_enc`` and ``refresh_token_enc`` must be a
Fernet token that ``cryptography``'s Fernet would decrypt under the
token-encryption key ring read from the HSM (its HMAC verifies, and its
plaintext's PKCS#7 padding is correct), no two cells may share an IV or a
ciphertext, and the canary's tokens must decrypt to what was handed in. A cell
that is authentic but badly padded is named apart: whatever wrote it holds the
key but is not a correct Fernet implementation. The observation comes from
``harness/probes/stored_tokens.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from harness.canaries import PLATFORMS
from harness.column_scans import FernetColumnScan
from harness.details import counts, plain, plural
from harness.evidence import EvidenceRecorder
from harness.formats.fernet import FernetFailure
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import canary_data_and_note
from harness.probes.stored_tokens import TokenObservation, observe_tokens
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def tokens_fernet_unavailable(profile: TargetProfile) -> Verdict | None:
    """MANUAL when the profile lacks what at_rest.tokens_fernet reads, else None."""
    missing = [what for what, section in (("no [database] section", profile.database),
                                          ("no [hsm] section", profile.hsm)) if section is None]
    if not missing:
        return None
    return Verdict.manual(
        f"The profile has {' and '.join(missing)}, so the token columns cannot be read or their "
        "keys obtained. By hand: on the service's database run `SELECT id, platform, "
        "access_token_enc, refresh_token_enc FROM channels`, and with the token-encryption keys "
        "from the HSM (objects under <key_namespace>token-encryption/) show that every cell is a "
        "Fernet token (version byte 0x80) whose HMAC verifies and that decrypts under one of those "
        "keys (e.g. `cryptography.fernet.MultiFernet([...]).decrypt(cell)`), for each of the "
        f"platforms {', '.join(PLATFORMS)}, and that no two cells share an IV (the 16 bytes after the "
        "version byte and timestamp) or a ciphertext.", missing=missing)


def badly_padded(scan: FernetColumnScan) -> str:
    """The sentence naming a column's authentic but badly padded cells ('' if none)."""
    count = scan.failures.get(FernetFailure.BAD_PADDING.value, 0)
    if not count:
        return ""
    rows = ", ".join(scan.badly_padded)
    named = (f"{rows}" if len(scan.badly_padded) == count
             else f"the first {len(scan.badly_padded)}: {rows}")
    return (f"{plural(count, 'cell')} of {scan.column} {'is' if count == 1 else 'are'} "
            "authentic but badly padded (the HMAC verifies under the HSM key ring, but the "
            "decrypted plaintext's PKCS#7 padding is broken, so a correct Fernet implementation "
            "refuses to decrypt it): whatever wrote it held the key and is not a correct Fernet "
            f"implementation ({named})")


def tokens_fernet_verdict(obs: TokenObservation) -> Verdict:
    """Every token cell is Fernet under the HSM ring, IVs and ciphertexts are unique, and the
    canary's tokens decrypt to exactly what was handed in."""
    details: dict[str, Any] = {
        "key_ring": list(obs.ring), "columns": [plain(c) for c in obs.columns],
        "shared_iv_cells": obs.shared_iv_cells, "shared_iv_groups": obs.shared_iv_groups,
        "shared_ciphertext_cells": obs.shared_ciphertext_cells,
        "canary": [plain(c) for c in obs.canary], "canary_note": obs.canary_note}
    sample = obs.sample
    if sample is not None:
        details["sampling"] = sample.evidence()
    marker = "SAMPLED (a uniform sample, not every row): " if sample is not None else ""
    problems = []
    for scan in obs.columns:
        bad = scan.rows - scan.valid
        if bad:
            platforms = ", ".join(f"{p} {c['rows'] - c['valid']} of {c['rows']}"
                                  for p, c in scan.by_platform.items() if c["rows"] > c["valid"])
            problems.append(f"{bad} of {scan.rows} cells of {scan.column} are not Fernet tokens "
                            f"that verify and decrypt under the HSM key ring "
                            f"({counts(scan.failures)}"
                            + (f"; by platform: {platforms}" if platforms else "")
                            + f"; e.g. {', '.join(scan.examples[:3])})")
        padding = badly_padded(scan)
        if padding:
            problems.append(padding)
    if obs.shared_iv_cells:
        problems.append(f"{obs.shared_iv_cells} token cells share an IV with another cell "
                        f"({plural(obs.shared_iv_groups, 'IV')} used more than once): Fernet "
                        "IVs must be random per token")
    if obs.shared_ciphertext_cells:
        problems.append(f"{obs.shared_ciphertext_cells} token cells share their ciphertext with "
                        "another cell")
    wrong = [c for c in obs.canary if c.result != "matches"]
    if wrong:
        problems.append("the canary's tokens do not read back as handed in: "
                        + ", ".join(f"{c.platform} {c.kind} ({c.result})" for c in wrong))
    if problems:
        of_rows = (f" Found among {sample.rows_sampled} rows of {sample.table} drawn at "
                   f"random ({sample.percent:.3g}% of each row's chance)." if sample else "")
        return Verdict.failed(f"{marker}OAuth tokens are not all encrypted per row with Fernet: "
                              + "; ".join(problems) + "." + of_rows, **details)
    cells = sum(scan.rows for scan in obs.columns)
    if cells == 0:
        return Verdict.error("There are no channel rows to judge, and no canary was planted: "
                             "the promise could not be observed.", **details)
    used = Counter[str]()
    for scan in obs.columns:
        used.update(scan.keys_used)
    canary = (f" The canary's {len(obs.canary)} tokens ({len(PLATFORMS)} platforms) decrypt to "
              "exactly what was handed in." if obs.canary
              else f" No canary was planted ({obs.canary_note}).")
    seen = sorted({p for s in obs.columns for p in s.by_platform if p != "other"})
    covered = f" Platforms with rows: {', '.join(seen)}." if seen else ""
    if sample is not None:
        return Verdict.passed(
            f"{sample.sentence('token cells')} All {cells} sampled token cells of "
            f"{', '.join(s.column for s in obs.columns)} are Fernet tokens whose HMAC verifies "
            f"under the HSM key ring ({counts(dict(used))}) and whose decrypted padding is "
            "correct; no two sampled cells share an IV or a ciphertext (shared IVs were looked "
            f"for among the sampled cells only).{canary}{covered}", **details)
    return Verdict.passed(
        f"All {cells} token cells of {', '.join(s.column for s in obs.columns)} are Fernet tokens "
        f"whose HMAC verifies under the HSM key ring ({counts(dict(used))}) and whose decrypted "
        f"padding is correct; no two cells share an IV or a ciphertext.{canary}{covered}",
        **details)


@pytest.mark.claims("REST-TOKENS-FERNET")
@pytest.mark.access("api", "database", "hsm")
def check_tokens_fernet(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                        known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    unavailable = tokens_fernet_unavailable(profile)
    if unavailable is not None:
        evidence.conclude(unavailable)
    canary, note = canary_data_and_note(request, profile)
    obs = observe_tokens(profile, policy, known_secrets, canary, note)
    verdict = tokens_fernet_verdict(obs)
    evidence.attach("tokens-fernet", verdict.details)
    evidence.conclude(verdict)
