"""Promises no machine check can see: judged on the attestation file a profile names."""

from __future__ import annotations

import hashlib

from harness.outcomes import Verdict
from harness.profile import TargetProfile
from harness.safe_files import Cap, FileRefused, read_bytes


def attested_verdict(profile: TargetProfile, claim_id: str, what_to_show: str) -> Verdict:
    """PASS on a non-empty attestation file the profile names for the claim; MANUAL without
    one; ERROR naming the file when it is empty or cannot be read."""
    path = profile.attestations.get(claim_id)
    if path is None:
        return Verdict.manual(what_to_show)
    try:
        content = read_bytes(path, f"attestation for {claim_id}", Cap.ATTESTATION)
    except FileRefused as exc:
        return Verdict.error(f"The attestation for {claim_id} ({path}) cannot be read: "
                             f"{exc.reason}.", attestation=str(path))
    if not content.strip():
        # An empty file attests nothing; it must not turn into PASS.
        return Verdict.error(f"The attestation for {claim_id} ({path}) is empty, so it attests "
                             f"nothing. {what_to_show}", attestation=str(path),
                             size=len(content))
    digest = hashlib.sha256(content).hexdigest()
    return Verdict.passed(f"Attested by {path} (sha256 {digest[:16]}…); no machine check can "
                          "see volumes from here.", attestation=str(path), sha256=digest)
