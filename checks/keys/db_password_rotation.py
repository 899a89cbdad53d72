"""keys.db_password_rotation: rotating the database password ends the old one, the service stays up.

The password is read from the HSM and tried at PostgreSQL as the
application's role; the profile's rotation command runs; the old password
must then be refused, the new one from the HSM accepted, and the service
still work. :func:`password_rotation_verdict` judges the Redis password's
rotation too (``keys.redis_password_rotation``): the promise is the same.
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.prerequisites import operator_command, require_sections
from harness.probes.credentials import try_postgres
from harness.probes.rotation import PasswordRotationObservation, observe_password_rotation
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def password_rotation_verdict(obs: PasswordRotationObservation) -> Verdict:
    """The old password is refused afterwards and the service still works."""
    details = {"command": obs.command.as_evidence(), "old_before": obs.old_accepted_before or "accepted",
               "old_after": obs.old_after, "new_after": obs.new_after,
               "changed_in_hsm": obs.changed_in_hsm, "service_after": obs.service_after or "ok"}
    if obs.old_accepted_before:
        return Verdict.error(f"Cannot test the {obs.what} password rotation: the password read from "
                             f"the HSM did not work before it ({obs.old_accepted_before}).", **details)
    if obs.command.timed_out:
        return Verdict.error(f"The {obs.what} password rotation command "
                             f"{obs.command.unfinished()}.", **details)
    if not obs.command.ok:
        return Verdict.failed(f"The {obs.what} password rotation failed: {obs.command.describe()}.",
                              **details)
    if obs.old_after == "accepted":
        return Verdict.failed(f"The old {obs.what} password still works after the rotation.",
                              **details)
    if obs.old_after != "refused":
        return Verdict.error(f"Cannot tell whether the old {obs.what} password is refused: "
                             f"{obs.old_after}.", **details)
    if obs.service_after:
        return Verdict.failed(f"The service does not work after the {obs.what} password rotation: "
                              f"{obs.service_after}.", **details)
    if obs.changed_in_hsm is False:
        return Verdict.failed(f"The HSM still holds the old {obs.what} password after the "
                              "rotation: the new password is not kept in the HSM.", **details)
    if obs.changed_in_hsm is None or obs.new_after != "accepted":
        why = obs.new_after or "not tried"
        return Verdict.error(f"Cannot confirm that the new {obs.what} password from the HSM is the "
                             f"one in use: {why}.", **details)
    return Verdict.passed(f"After the rotation the old {obs.what} password is refused, the new one "
                          f"from the HSM works, and the service still works "
                          f"({obs.command.duration_s:.1f} s).", **details)


@pytest.mark.claims("KEYS-DB-PASSWORD-ROTATION")
def check_db_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    by_hand = ("rotate the database password, confirm the old one is refused by PostgreSQL and the "
               "service still works.")
    command = operator_command(profile, evidence, "rotate_db_password", by_hand)
    require_sections(profile, evidence, ("hsm", "database", "api"), by_hand)
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
