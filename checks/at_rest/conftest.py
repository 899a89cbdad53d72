"""The at-rest area's shared fixture (the run's canary account) and the order of its checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.canaries import CanarySession, planted_canary
from harness.policy import Policy
from harness.probes.mfa_codes import MfaRowsBeforeCanary, observe_mfa_rows_before_canary
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: The order the area's checks run in. The plaintext sweep comes after every check that
#: plants or learns a secret (the canary's fresh recovery token, its session tokens), so
#: that it searches for them all. The backup and drill checks change the system: the run
#: puts them after every check that only observes (``harness.plugin.observing_first``),
#: so the sweep judges the backup store as found, and ``backup_encrypted`` judges every
#: file the audit's own backup leaves, with the same known secrets.
CHECK_ORDER = ("tokens_fernet", "password_hashes", "backup_codes", "recovery_tokens",
               "data_inventory", "postgres_version", "volume_encryption", "backup_encrypted",
               "backup_retention", "restore_drill", "plaintext_sweep")
_AREA = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def mfa_rows_before_canary(profile: TargetProfile, policy: Policy,
                           known_secrets: KnownSecrets) -> MfaRowsBeforeCanary:
    """Every user's MFA code and recovery-token rows, judged once before the canary enrolls."""
    return observe_mfa_rows_before_canary(profile, policy, known_secrets)


@pytest.fixture(scope="session")
def at_rest_canary(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                   mfa_rows_before_canary: MfaRowsBeforeCanary) -> Iterator[CanarySession]:
    """One canary account for the at-rest checks, removed at the end of the run; every user's
    MFA rows are observed first (``mfa_rows_before_canary``), so "as found" never counts the
    canary's own. Its recovery mail is read from the profile's ``[mailbox]`` (or the fakes'
    ``[capture]``); with neither, it is made without one."""
    with planted_canary(profile, policy, known_secrets) as session:
        yield session


def _rank(item: pytest.Item) -> int:
    stem = Path(str(item.path)).stem
    return CHECK_ORDER.index(stem) if stem in CHECK_ORDER else len(CHECK_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put this area's checks in :data:`CHECK_ORDER`, in the places they were collected in."""
    places = [i for i, item in enumerate(items) if Path(str(item.path)).parent == _AREA]
    for place, item in zip(places, sorted((items[i] for i in places), key=_rank), strict=True):
        items[place] = item
