"""keys.db_password_rotation: rotating the database password ends the old one, the service stays up.

The password is read from the HSM and tried at PostgreSQL as the
application's role; the profile's rotation command runs; the old password
must then be refused, the new one from the HSM accepted, and the service
still work. The promise is ``keys.redis_password_rotation``'s for another
store: both checks are one entry (:mod:`harness.password_rotation_entry`, a
row each of its table of stores) and one judgement
(:func:`harness.probes.rotation.password_rotation_verdict`, kept beside the
observation). The command is not run when the service or a dependency is
unavailable (or was, earlier in the run); failures seen while a dependency
was unavailable right after it are ERROR naming it, not FAIL.
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.password_rotation_entry import DATABASE_PASSWORD, conclude_password_rotation
from harness.policy import Policy
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@pytest.mark.claims("KEYS-DB-PASSWORD-ROTATION")
@pytest.mark.access("api", "database", "hsm", "destructive")
def check_db_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    conclude_password_rotation(profile, policy, known_secrets, evidence, key_classes, DATABASE_PASSWORD)
