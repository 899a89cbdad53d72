"""The run's canary account for the checks that follow one.

One account is planted through the API for the whole run (its password,
e-mail, OAuth tokens, backup codes and recovery token registered as known
secrets) and removed at the end; an account left behind stays open in the
run's canary ledger (:mod:`harness.canary_ledger`), which tries once more and
reports it as ``harness.cleanup`` ERROR by its ``users.id``. The pytest
fixture that holds it for the session is ``at_rest_canary``
(``checks/at_rest/conftest.py``, made by :func:`harness.canaries.planted_canary`);
checks ask for it through
:func:`canary_for_check`, so that a profile that allows no canary never
plants one.
"""

from __future__ import annotations

import pytest

from harness.canaries import Canary, CanarySession, canary_refused
from harness.profile import TargetProfile

#: The session fixture that holds the run's canary.
CANARY_FIXTURE = "at_rest_canary"


def canary_unavailable(profile: TargetProfile) -> str | None:
    """Why the profile allows no canary account, or None (a canary needs no mail: its recovery
    mail is read only where the profile allows, see :mod:`harness.canary_mail`)."""
    return canary_refused(profile)


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


def canary_data_and_note(request: pytest.FixtureRequest,
                         profile: TargetProfile) -> tuple[Canary | None, str]:
    """What the run's canary planted and no note, or None and why there is none: for the
    checks that read its values back in what the service stores (tokens_fernet,
    password_hashes, data_inventory) and never act through its session."""
    session, note = canary_and_note(request, profile)
    return (session.canary if session else None), note
