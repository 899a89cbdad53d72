"""keys.redis_password_rotation: rotating the Redis password ends the old one, the service stays up.

The password is read from the HSM and tried with AUTH at Redis; the
profile's rotation command runs; the old password must then be refused, the
new one from the HSM accepted, and the service still work. The entry and the
judgement are the database password's (:mod:`harness.password_rotation_entry`,
:func:`harness.probes.rotation.password_rotation_verdict`): not run when the
service or a dependency is unavailable, ERROR naming the dependency when one
was unavailable right after the rotation.
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.password_rotation_entry import REDIS_PASSWORD, conclude_password_rotation
from harness.policy import Policy
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@pytest.mark.claims("KEYS-REDIS-PASSWORD-ROTATION")
@pytest.mark.access("api", "redis", "hsm", "destructive")
def check_redis_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                                  evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    conclude_password_rotation(profile, policy, known_secrets, evidence, key_classes, REDIS_PASSWORD)
