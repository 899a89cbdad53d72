"""at_rest.backup_encrypted: every backup in the store is encrypted, not merely compressed.

The store is judged as found first (``harness/probes/backup_store.py``: every
entry, recorded before the audit made anything in it): a file that is not an
encrypted backup (a dump, plain text, an archive or compressed file, a known
secret, bytes of too little entropy) FAILs, named. Then the harness takes a
backup itself (``harness/probes/backups.py``) and judges the new file the same
way, with its whole content searched for known secrets.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain, plural
from harness.evidence import EvidenceRecorder
from harness.operations import require_operations
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.backup_store import (
    CONTAINER_FORMATS,
    OTHER_ENCRYPTED_MAGIC,
    PLAIN_FORMATS,
    SERVICE_FORMAT,
    BackupInspection,
    StoreEntry,
    StoreObservation,
    store_as_found,
)
from harness.probes.backups import BackupObservation, observe_backup
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: Bits per byte below which a backup sample does not look like ciphertext
#: (uniformly random bytes give 8.0; compressed SQL about 7.9, but compressed
#: dumps carry a PGDMP header; plain SQL text about 4.5-5.5).
MIN_CIPHERTEXT_ENTROPY = 7.5
#: Samples shorter than this are too small for entropy to mean anything.
MIN_ENTROPY_SAMPLE = 1024
#: How many files a message names; the evidence lists every one.
NAMED_IN_MESSAGE = 10


def data_in_the_clear(found: BackupInspection) -> list[str]:
    """What in a file the backup left beside the backup (a checksum, a manifest, a staging
    dump) shows the database's data unencrypted: a dump's markers, known secrets, or markers
    inside its compressed bytes. Plain text alone is no finding there: a manifest is text."""
    problems = []
    if found.markers:
        problems.append("it shows " + ", ".join(found.markers))
    if found.decompressed_markers:
        problems.append(f"its first {found.decompressed} decompressed bytes show "
                        + ", ".join(found.decompressed_markers))
    if found.secret_hits:
        problems.append(_secrets_held(found))
    return problems


def _secrets_held(found: BackupInspection) -> str:
    return "it holds known secrets in plaintext: " + ", ".join(
        sorted({f"{h.label} at offset {h.offset}" for h in found.secret_hits})[:5])


def content_problems(found: BackupInspection) -> list[str]:
    """Why the bytes of one file show it is not an encrypted backup (empty: none seen)."""
    problems = []
    if found.format in PLAIN_FORMATS:
        problems.append(f"it is a {found.format}" if found.format != "text"
                        else "it is plain text")
    if found.markers:
        problems.append("it shows " + ", ".join(found.markers))
    if found.compression or found.format in CONTAINER_FORMATS:
        kind = found.compression or found.format
        # Compression is not encryption: anyone can decompress it.
        if found.decompressed_markers:
            inside = (f"; its first {found.decompressed} decompressed bytes show "
                      + ", ".join(found.decompressed_markers))
        elif found.decompressed:
            inside = f"; its first {found.decompressed} decompressed bytes show no dump marker"
        elif found.compression:
            inside = "; its content could not be decompressed here to look inside"
        else:
            inside = ""
        what = "compressed" if found.compression else "archived"
        problems.append(f"it is {what}, not encrypted ({kind}){inside}")
    if found.secret_hits:
        problems.append(_secrets_held(found))
    if (found.format not in (SERVICE_FORMAT, *OTHER_ENCRYPTED_MAGIC)
            and found.sampled >= MIN_ENTROPY_SAMPLE
            and found.entropy_bits < MIN_CIPHERTEXT_ENTROPY):
        problems.append(f"its bytes carry {found.entropy_bits:.2f} bits per byte "
                        f"({found.encoding}), below the {MIN_CIPHERTEXT_ENTROPY} of ciphertext")
    return problems


def _unjudged(entry: StoreEntry) -> str:
    """Why an entry's content could not be judged, or ``""``."""
    if entry.kind == "symlink":
        return f"a symlink to {entry.link_target} (not followed)"
    if entry.kind in ("fifo", "socket", "device", "other"):
        return f"a {entry.kind}, not a file (not opened)"
    if entry.kind == "file" and entry.content is None:
        return f"unreadable ({entry.error})"
    found = entry.content
    if (found is not None and found.format == "unknown" and found.size > 0
            and found.sampled < MIN_ENTROPY_SAMPLE):
        return (f"only {found.sampled} bytes in no known format, too small (under "
                f"{MIN_ENTROPY_SAMPLE}) for entropy to show whether it is ciphertext")
    return ""


def _named(items: list[str]) -> str:
    shown = "; ".join(items[:NAMED_IN_MESSAGE])
    more = len(items) - NAMED_IN_MESSAGE
    return shown + (f"; and {more} more (listed in the evidence)" if more > 0 else "")


def store_judgement(store: StoreObservation) -> tuple[list[str], list[str], str]:
    """The store as found: its files that are not encrypted backups, the entries that could
    not be judged, and a summary of the rest."""
    if store.error:
        return [], [f"the store could not be read ({store.error})"], ""
    bad = []
    unjudged = []
    for entry in store.entries:
        problems = content_problems(entry.content) if entry.content is not None else []
        if problems:
            bad.append(f"{entry.path}: " + "; ".join(problems))
        elif reason := _unjudged(entry):
            unjudged.append(f"{entry.path}: {reason}")
    if store.truncated:
        unjudged.append("the walk stopped at its bound, so some entries were not seen")
    files = [e.content for e in store.files if e.content is not None]
    service = sum(1 for f in files if f.format == SERVICE_FORMAT)
    other = sum(1 for f in files if f.format in OTHER_ENCRYPTED_MAGIC)
    empty = sum(1 for f in files if f.format == "empty")
    guessed = len(files) - service - other - empty
    if store.missing:
        summary = f"The backup store {store.directory} did not exist before the audit's backup."
    elif not files and not store.entries:
        summary = "As found, the backup store was empty."
    else:
        parts = [f"{service} in the service's format ({SERVICE_FORMAT})"]
        if other:
            parts.append(f"{other} in another encrypted format")
        if guessed:
            parts.append(f"{guessed} in no recognised format whose bytes read as ciphertext")
        if empty:
            parts.append(f"{empty} empty")
        summary = (f"As found, the backup store held {plural(len(store.files), 'file')}: "
                   + ", ".join(parts) + ".")
    return bad, unjudged, summary


def fresh_backup_judgement(obs: BackupObservation) -> tuple[str, str]:
    """The fresh backup: (``fail`` | ``error`` | ``pass``, a sentence saying why)."""
    if not obs.run.succeeded:
        return "error", (f"The backup command failed, so no fresh backup could be judged: "
                         f"{obs.run.describe()}.")
    found = obs.inspection
    if found is None:
        return "error", ("The backup command succeeded but no new file appeared in the "
                         "backup directory" + (" among the entries the harness lists (the store "
                                               "holds more)." if obs.listing_cut else "."))
    problems = content_problems(found)
    if problems:
        return "fail", f"The fresh backup {found.name} is not encrypted: {'; '.join(problems)}."
    beside = [f"{other.name}: {'; '.join(data_in_the_clear(other))}" for other in obs.others
              if data_in_the_clear(other)]
    if beside:
        return "fail", (f"The backup also left {plural(len(beside), 'file')} beside {found.name} "
                        f"that {'holds' if len(beside) == 1 else 'hold'} the data in the clear: "
                        + "; ".join(beside) + ".")
    if obs.listing_cut:
        return "error", (f"The fresh backup {found.name} shows no plaintext, but the store holds "
                         "more entries than the harness lists, so a file the backup left beside "
                         "it may not have been seen.")
    if found.sampled < MIN_ENTROPY_SAMPLE and found.format != SERVICE_FORMAT:
        return "error", (f"The fresh backup {found.name} is only {found.sampled} bytes, too "
                         f"small (under {MIN_ENTROPY_SAMPLE}) for its entropy to show whether "
                         "it is ciphertext: encryption could not be observed.")
    return "pass", (f"The fresh backup {found.name} ({found.size} bytes) shows no dump "
                    "header, no compression magic number and no known secret; its content "
                    f"is {found.entropy_bits:.2f} bits per byte ({found.encoding}).")


def backup_encrypted_verdict(obs: BackupObservation) -> Verdict:
    """Every file in the store as found, and a fresh backup, holds no dump header, is not
    merely compressed or archived, holds no known secret, and looks like ciphertext."""
    details: dict[str, Any] = {"store_as_found": plain(obs.store), "command": plain(obs.run),
                               "backup": plain(obs.inspection) if obs.inspection else None,
                               "also_left": [plain(other) for other in obs.others]}
    bad, unjudged, summary = store_judgement(obs.store)
    fresh, sentence = fresh_backup_judgement(obs)
    in_store = (f"The backup store as found holds {plural(len(bad), 'file')} that "
                f"{'is not an encrypted backup' if len(bad) == 1 else 'are not encrypted backups'}"
                f": {_named(bad)}." if bad else "")
    entries = "1 entry" if len(unjudged) == 1 else f"{len(unjudged)} entries"
    not_judged = (f"{entries} of the store could not be judged: "
                  f"{_named(unjudged)}." if unjudged else "")
    if bad or fresh == "fail":
        return Verdict.failed(" ".join(s for s in (in_store, sentence if fresh == "fail" else "",
                                                   not_judged) if s), **details)
    if unjudged or fresh == "error":
        return Verdict.error(" ".join(s for s in (not_judged, sentence if fresh == "error"
                                                  else "") if s), **details)
    return Verdict.passed(f"{summary} {sentence}", **details)


@pytest.mark.claims("REST-BACKUPS-ENCRYPTED")
@pytest.mark.access("files", "destructive")
def check_backup_encrypted(request: pytest.FixtureRequest, profile: TargetProfile,
                           policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    require_operations(
        profile, evidence, ("backup", "backup_dir"),
        "list every file in the backup store, take a backup, and show that each file has no "
        "PGDMP or '-- PostgreSQL database dump' header, does not start with a compression "
        "magic number (gzip 1f8b, zstd 28b52ffd, "
        "xz fd377a585a00, bzip2 'BZh', zip 'PK\\x03\\x04') and reads as ciphertext "
        "(e.g. `head -c 64 FILE | xxd`), and name the key that encrypts it.")
    # The store as found, recorded before this check (or any other) makes a backup in it.
    store = store_as_found(request, profile, known_secrets)
    verdict = backup_encrypted_verdict(observe_backup(profile, policy, known_secrets, store))
    evidence.attach("backup-encrypted", verdict.details)
    evidence.conclude(verdict)
