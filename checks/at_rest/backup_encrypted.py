"""at_rest.backup_encrypted: a fresh backup is encrypted, not merely compressed.

The harness takes the backup itself (``harness/probes/backups.py``) and judges
the new file's markers, compression, known secrets and entropy.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain
from harness.evidence import EvidenceRecorder
from harness.operations import operations_unavailable
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.backups import BackupObservation, observe_backup
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: Bits per byte below which a backup sample does not look like ciphertext
#: (uniformly random bytes give 8.0; compressed SQL about 7.9, but compressed
#: dumps carry a PGDMP header; plain SQL text about 4.5-5.5).
MIN_CIPHERTEXT_ENTROPY = 7.5
#: Samples shorter than this are too small for entropy to mean anything.
MIN_ENTROPY_SAMPLE = 1024


def backup_encrypted_verdict(obs: BackupObservation) -> Verdict:
    """A fresh backup holds no dump header, is not merely compressed, holds no known secret,
    and is large enough to be sampled and looks like ciphertext."""
    details: dict[str, Any] = {"command": plain(obs.run),
                               "backup": plain(obs.inspection) if obs.inspection else None}
    if not obs.run.succeeded:
        return Verdict.error(f"The backup command failed, so no backup could be judged: "
                             f"{obs.run.describe()}.", **details)
    found = obs.inspection
    if found is None:
        return Verdict.error("The backup command succeeded but no new file appeared in the "
                             "backup directory.", **details)
    problems = []
    if found.markers:
        problems.append("it shows " + ", ".join(found.markers))
    if found.compression:
        # Compression is not encryption: anyone can decompress it.
        if found.decompressed_markers:
            inside = (f"; its first {found.decompressed} decompressed bytes show "
                      + ", ".join(found.decompressed_markers))
        elif found.decompressed:
            inside = f"; its first {found.decompressed} decompressed bytes show no dump marker"
        else:
            inside = "; its content could not be decompressed here to look inside"
        problems.append(f"it is compressed, not encrypted ({found.compression}){inside}")
    if found.secret_hits:
        problems.append("it holds known secrets in plaintext: " + ", ".join(
            sorted({f"{h.label} at offset {h.offset}" for h in found.secret_hits})[:5]))
    if found.sampled >= MIN_ENTROPY_SAMPLE and found.entropy_bits < MIN_CIPHERTEXT_ENTROPY:
        problems.append(f"its bytes carry {found.entropy_bits:.2f} bits per byte "
                        f"({found.encoding}), below the {MIN_CIPHERTEXT_ENTROPY} of ciphertext")
    if problems:
        return Verdict.failed(f"The fresh backup {found.name} is not encrypted: "
                              + "; ".join(problems) + ".", **details)
    if found.sampled < MIN_ENTROPY_SAMPLE:
        return Verdict.error(f"The fresh backup {found.name} is only {found.sampled} bytes, too "
                             f"small (under {MIN_ENTROPY_SAMPLE}) for its entropy to show whether "
                             "it is ciphertext: encryption could not be observed.", **details)
    return Verdict.passed(f"The fresh backup {found.name} ({found.size} bytes) shows no dump "
                          "header, no compression magic number and no known secret; its content "
                          f"is {found.entropy_bits:.2f} bits per byte ({found.encoding}).",
                          **details)


@pytest.mark.claims("REST-BACKUPS-ENCRYPTED")
def check_backup_encrypted(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    reason = operations_unavailable(
        profile, ("backup", "backup_dir"),
        "take a backup and show that its file has no PGDMP or '-- PostgreSQL database dump' "
        "header, does not start with a compression magic number (gzip 1f8b, zstd 28b52ffd, "
        "xz fd377a585a00, bzip2 'BZh', zip 'PK\\x03\\x04') and reads as ciphertext "
        "(e.g. `head -c 64 FILE | xxd`), and name the key that encrypts it.")
    if reason:
        evidence.manual(reason)
    verdict = backup_encrypted_verdict(observe_backup(profile, policy, known_secrets))
    evidence.attach("backup-encrypted", verdict.details)
    evidence.conclude(verdict)
