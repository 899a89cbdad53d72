"""What the run's canary planted, for the checks that look for it in what the service stores
(``at_rest.tokens_fernet``, ``at_rest.password_hashes``, ``at_rest.data_inventory``): they read
the canary's values back, never act through its session.

:func:`canary_data_and_note` is :func:`harness.probes.canary_account.canary_and_note` without
the session: the canary, or None and why there is none.
"""

from __future__ import annotations

import pytest

from harness.canaries import Canary
from harness.probes.canary_account import canary_and_note
from harness.profile import TargetProfile


def canary_data_and_note(request: pytest.FixtureRequest, profile: TargetProfile) -> tuple[Canary | None, str]:
    """The run's canary (what it planted) and no note, or None and why the profile allows none."""
    session, note = canary_and_note(request, profile)
    return (session.canary if session else None), note
