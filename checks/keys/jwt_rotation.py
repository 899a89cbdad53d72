"""keys.jwt_rotation: rotating the JWT secret ends the sessions signed with the old one.

A canary logs in, the profile's rotation command runs, and the old session
must be refused (401) within the grace period while a new login works. The
command is not run when the service or a dependency is unavailable (or was,
earlier in the run); failures seen while a dependency was unavailable right
after it are ERROR naming it, not FAIL. A canary account the check could not
remove is the run's canary ledger's to report (``harness.cleanup/<address>`` ERROR).
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.health import explained_failure
from harness.key_classes import KeyClasses
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.prerequisites import rotation_command
from harness.probes.rotation import (
    JwtRotationObservation,
    not_run_verdict,
    observe_jwt_rotation,
)
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def jwt_rotation_verdict(obs: JwtRotationObservation, grace_s: float) -> Verdict:
    """The old session is refused (401) after the rotation; a new login works.

    Not run because of an outage, or failed while a dependency was unavailable right
    after the rotation: ERROR naming it. An old session answered 200 is the service's own
    answer, so it stays a FAIL whatever happened later.
    """
    not_run = not_run_verdict(obs.health, obs.command)
    if not_run is not None:
        return not_run
    details = {"command": obs.command.as_evidence(), "status_before": obs.status_before,
               "status_after": obs.status_after, "refused_after_s": obs.refused_after_s,
               "grace_s": grace_s, "new_login": obs.new_login or "ok",
               "new_token_status": obs.new_token_status, "secret_changed": obs.secret_changed,
               "health": obs.health.as_evidence()}
    if obs.status_before != 200:
        return Verdict.error(f"The canary session was not accepted before the rotation "
                             f"(HTTP {obs.status_before}).", **details)
    still_accepted = obs.command.ok and obs.refused_after_s is None and obs.status_after == 200
    failures = []
    if not obs.command.ok:
        failures.append(f"the rotation command: {obs.command.unfinished() or obs.command.describe()}")
    answer_after = f"HTTP {obs.status_after}" if obs.status_after else "no answer"
    if obs.refused_after_s is None and obs.status_after != 200:
        failures.append(f"the old session got {answer_after}")
    if obs.new_login or obs.new_token_status != 200:
        failures.append(f"the new login: {obs.new_login or f'HTTP {obs.new_token_status}'}")
    outage = obs.health.explaining_outage()
    if outage is not None and failures and not still_accepted:
        return Verdict.error(explained_failure(outage, "JWT rotation", failures), **details)
    if obs.command.timed_out:
        return Verdict.error(f"The JWT rotation command {obs.command.unfinished()}.", **details)
    if not obs.command.ok:
        return Verdict.failed(f"The JWT rotation command failed: {obs.command.describe()}.", **details)
    if still_accepted:
        return Verdict.failed(f"A session token issued before the rotation is still accepted "
                              f"(HTTP {obs.status_after}) {grace_s:g} s after it.", **details)
    if obs.refused_after_s is None:
        # Neither accepted nor refused (a 5xx, a gateway error): nothing was observed
        # about the old session, so the check could not judge it.
        return Verdict.error(f"Cannot tell whether a session token issued before the rotation is "
                             f"refused: {grace_s:g} s after it the service gave {answer_after}, "
                             "neither 200 nor 401.", **details)
    if obs.new_login or obs.new_token_status != 200:
        return Verdict.failed(f"After the rotation, a new login does not work: "
                              f"{obs.new_login or f'HTTP {obs.new_token_status}'}.", **details)
    return Verdict.passed(f"After the JWT secret rotation the old session was refused "
                          f"(HTTP {obs.status_after}, {obs.refused_after_s:.1f} s after the command) "
                          f"and a new login worked.", **details)


@pytest.mark.claims("KEYS-JWT-ROTATION")
@pytest.mark.access("api", "destructive")
def check_jwt_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                       evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    command = rotation_command(
        profile, evidence, "rotate_jwt_secret", ("api",),
        by_hand="log in, rotate the JWT secret, confirm the old session gets 401 and a new login works.")
    obs = observe_jwt_rotation(profile, policy, known_secrets, key_classes, command)
    verdict = jwt_rotation_verdict(obs, key_classes.proof.roll_grace_s)
    evidence.attach("jwt-rotation", verdict.details)
    evidence.conclude(verdict)
