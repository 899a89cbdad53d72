"""at_rest.volume_encryption: PostgreSQL's volumes are encrypted.

No database connection can see the storage under the data directory: the
check is MANUAL unless the profile names an attestation for the claim.
"""

from __future__ import annotations

import pytest

from harness.attestations import attested_verdict
from harness.evidence import EvidenceRecorder
from harness.profile import TargetProfile

VOLUMES_ATTESTATION = (
    "The storage under PostgreSQL's data directory cannot be seen from a database connection. "
    "Supply an attestation (profile [attestations] REST-DB-ENCRYPTED-VOLUMES = FILE) showing "
    "the volume's encryption: e.g. `lsblk -o NAME,TYPE,FSTYPE,MOUNTPOINT` with a `crypt` device "
    "under the data directory (`SHOW data_directory`), or the cloud volume's encryption flag, "
    "and name the key that protects it.")


@pytest.mark.claims("REST-DB-ENCRYPTED-VOLUMES")
@pytest.mark.access("attestation")
def check_volume_encryption(profile: TargetProfile, evidence: EvidenceRecorder) -> None:
    verdict = attested_verdict(profile, "REST-DB-ENCRYPTED-VOLUMES", VOLUMES_ATTESTATION)
    evidence.conclude(verdict)
