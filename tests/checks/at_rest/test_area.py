"""The at-rest area as a whole: every check exists with claims, none ends NOT_APPLICABLE."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.profile import parse_profile
from harness.redaction import KnownSecrets

POLICY = load_policy()
CHECKS = ["tokens_fernet", "password_hashes", "backup_codes", "recovery_tokens", "plaintext_sweep",
          "data_inventory", "postgres_version", "volume_encryption", "backup_encrypted",
          "backup_retention", "restore_drill"]


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


@pytest.mark.parametrize("name", ["tokens_fernet", "password_hashes", "data_inventory", "backup_codes",
                                  "recovery_tokens"])
def test_checks_conclude_manual_without_a_database(name: str, tmp_path: Path) -> None:
    from harness.evidence import EvidenceRecorder
    from harness.outcomes import CheckOutcome

    # Given a profile with no [database] and no [hsm]
    recorder = EvidenceRecorder(f"at_rest.{name}", tmp_path, KnownSecrets())
    # When the check runs, Then it ends MANUAL before touching anything
    with pytest.raises(CheckOutcome) as ended:
        check = getattr(importlib.import_module(f"checks.at_rest.{name}"), f"check_{name}")
        check(request=None, profile=_profile(), policy=POLICY, known_secrets=KnownSecrets(),
              evidence=recorder)
    assert ended.value.verdict.outcome is Outcome.MANUAL
    assert "By hand:" in ended.value.verdict.message


def test_no_at_rest_check_ends_not_applicable() -> None:
    # The page's at-rest promises apply to every target; a missing profile section is MANUAL.
    for name in CHECKS:
        module = importlib.import_module(f"checks.at_rest.{name}")
        assert "not_applicable" not in inspect.getsource(module), name


@pytest.mark.parametrize("name", CHECKS)
def test_every_check_exists_with_claims(name: str) -> None:
    check = getattr(importlib.import_module(f"checks.at_rest.{name}"), f"check_{name}")
    marks = [m for m in check.pytestmark if m.name == "claims"]
    assert marks and marks[0].args
