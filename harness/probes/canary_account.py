"""The run's canary account for the checks that follow one.

One account is planted through the API for the whole run (its password,
e-mail, OAuth tokens, backup codes and recovery token registered as known
secrets) and removed at the end; an account left behind stays open in the
run's canary ledger (:mod:`harness.canary_ledger`), which tries once more and
reports it as ``harness.cleanup`` ERROR by its ``users.id``. The pytest
fixture that holds it for the session is ``at_rest_canary``
(``checks/at_rest/conftest.py``); checks ask for it through
:func:`canary_for_check`, so that a profile that allows no canary never
plants one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.canaries import CanarySession, MailCapture
from harness.policy import Policy
from harness.probes.api import VotrizApi
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: The session fixture that holds the run's canary.
CANARY_FIXTURE = "at_rest_canary"


@contextmanager
def planted_canary(profile: TargetProfile, policy: Policy,
                   known_secrets: KnownSecrets) -> Iterator[CanarySession]:
    """A canary account for the block, removed at its end (one left is the ledger's to report)."""
    def new_api() -> VotrizApi:
        return VotrizApi(profile, timeout_s=policy.timeouts.request_s)

    mail = MailCapture(profile, policy)
    session = CanarySession(new_api(), mail, known_secrets, api_factory=new_api)
    try:
        with session:
            yield session
    finally:
        mail.close()
        session.api.close()


def canary_unavailable(profile: TargetProfile) -> str | None:
    """Why the profile allows no canary account, or None."""
    if profile.api is None:
        return "the profile has no [api] section, so no canary account can be made"
    if not profile.api.canaries:
        return "the profile does not allow canary accounts (api.canaries = false)"
    if profile.capture is None:
        return "the profile has no [capture] section to read the canary's recovery mail from"
    return None


def canary_for_check(request: pytest.FixtureRequest, profile: TargetProfile) -> CanarySession | None:
    """The run's canary, or None when the profile does not allow one."""
    if canary_unavailable(profile) is not None:
        return None
    session = request.getfixturevalue(CANARY_FIXTURE)
    assert isinstance(session, CanarySession)
    return session


def canary_and_note(request: pytest.FixtureRequest,
                    profile: TargetProfile) -> tuple[CanarySession | None, str]:
    """The run's canary and no note, or no canary and why there is none."""
    reason = canary_unavailable(profile)
    return (None, reason) if reason else (canary_for_check(request, profile), "")
