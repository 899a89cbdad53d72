"""keys.db_password_rotation: rotating the database password ends the old one, the service stays up.

The password is read from the HSM and tried at PostgreSQL as the
application's role; the profile's rotation command runs; the old password
must then be refused, the new one from the HSM accepted, and the service
still work. The judgement (:func:`harness.probes.rotation.password_rotation_verdict`)
is shared with ``keys.redis_password_rotation`` and kept beside the observation:
the promise is the same. The command is not run when the service or a
dependency is unavailable (or was, earlier in the run); failures seen while a
dependency was unavailable right after it are ERROR naming it, not FAIL.
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.policy import Policy
from harness.prerequisites import rotation_command
from harness.probes.credentials import try_postgres
from harness.probes.rotation import observe_password_rotation, password_rotation_verdict
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@pytest.mark.claims("KEYS-DB-PASSWORD-ROTATION")
@pytest.mark.access("api", "database", "hsm", "destructive")
def check_db_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    command = rotation_command(
        profile, evidence, "rotate_db_password", ("hsm", "database", "api"),
        by_hand=("rotate the database password, confirm the old one is refused by PostgreSQL and the "
                 "service still works."))
    assert profile.hsm is not None and profile.database is not None
    dsn = profile.database.dsn
    role = profile.database.app_role or key_classes.proof.db_app_role
    obs = observe_password_rotation(
        profile, policy, known_secrets, key_classes, command,
        profile.hsm.key_namespace + key_classes.proof.db_password,
        lambda password: try_postgres(dsn, role, password, policy.timeouts.connect_s), "database")
    verdict = password_rotation_verdict(obs)
    evidence.attach("db-password-rotation", {**verdict.details, "role": role})
    evidence.conclude(verdict)
