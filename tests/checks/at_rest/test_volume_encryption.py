"""at_rest.volume_encryption: MANUAL without an attestation, judged on the one the profile names."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.at_rest.volume_encryption import VOLUMES_ATTESTATION
from harness.attestations import attested_verdict
from harness.outcomes import Outcome, Verdict
from harness.profile import parse_profile


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def test_volume_encryption_manual_then_attested(tmp_path: Path) -> None:
    verdict = attested_verdict(_profile(), "REST-DB-ENCRYPTED-VOLUMES",  # type: ignore[arg-type]
                               VOLUMES_ATTESTATION)
    assert verdict.outcome is Outcome.MANUAL and "lsblk" in verdict.message
    attestation = tmp_path / "volumes.txt"
    attestation.write_text("pgdata on dm-crypt\n")
    profile = _profile(f'[attestations]\nREST-DB-ENCRYPTED-VOLUMES = "{attestation}"\n')
    verdict = attested_verdict(profile, "REST-DB-ENCRYPTED-VOLUMES", "x")  # type: ignore[arg-type]
    assert verdict.outcome is Outcome.PASS and str(attestation) in verdict.message


def _attested(tmp_path: Path, content: bytes | None) -> Verdict:
    attestation = tmp_path / "volumes.txt"
    if content is not None:
        attestation.write_bytes(content)
    profile = _profile(f'[attestations]\nREST-DB-ENCRYPTED-VOLUMES = "{attestation}"\n')
    return attested_verdict(profile, "REST-DB-ENCRYPTED-VOLUMES",  # type: ignore[arg-type]
                            VOLUMES_ATTESTATION)


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_attestation_is_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    verdict = _attested(tmp_path, content)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith(
        f"The attestation for REST-DB-ENCRYPTED-VOLUMES ({tmp_path / 'volumes.txt'}) is empty, "
        "so it attests nothing.")


def test_unreadable_attestation_is_error_naming_the_file(tmp_path: Path) -> None:
    verdict = _attested(tmp_path, None)
    assert verdict.outcome is Outcome.ERROR
    assert f"({tmp_path / 'volumes.txt'}) cannot be read: No such file or directory." in \
        verdict.message


def test_non_empty_attestation_passes_with_its_sha256(tmp_path: Path) -> None:
    import hashlib

    content = b"pgdata on dm-crypt (luks2, aes-xts-plain64), key in KMS key/votriz-db\n"
    verdict = _attested(tmp_path, content)
    digest = hashlib.sha256(content).hexdigest()
    assert verdict.outcome is Outcome.PASS
    assert f"(sha256 {digest[:16]}…)" in verdict.message
    assert verdict.details["sha256"] == digest
