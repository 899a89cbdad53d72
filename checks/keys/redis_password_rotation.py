"""keys.redis_password_rotation: rotating the Redis password ends the old one, the service stays up.

The password is read from the HSM and tried with AUTH at Redis; the
profile's rotation command runs; the old password must then be refused, the
new one from the HSM accepted, and the service still work. The judgement is
the database password's, kept beside the observation
(:func:`harness.probes.rotation.password_rotation_verdict`): not run when the
service or a dependency is unavailable, ERROR naming the dependency when one
was unavailable right after the rotation.
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.policy import Policy
from harness.prerequisites import rotation_command
from harness.probes.credentials import try_redis
from harness.probes.rotation import observe_password_rotation, password_rotation_verdict
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@pytest.mark.claims("KEYS-REDIS-PASSWORD-ROTATION")
@pytest.mark.access("api", "redis", "hsm", "destructive")
def check_redis_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                                  evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    command = rotation_command(
        profile, evidence, "rotate_redis_password", ("hsm", "redis", "api"),
        by_hand=("rotate the Redis password, confirm AUTH with the old one fails and the service "
                 "still works."))
    assert profile.hsm is not None and profile.redis is not None
    target = profile.redis
    label = target.password_hsm_label or profile.hsm.key_namespace + key_classes.proof.redis_password
    obs = observe_password_rotation(
        profile, policy, known_secrets, key_classes, command, label,
        lambda password: try_redis(target.host, target.port, password, policy.timeouts.connect_s),
        "Redis")
    verdict = password_rotation_verdict(obs)
    evidence.attach("redis-password-rotation", verdict.details)
    evidence.conclude(verdict)
