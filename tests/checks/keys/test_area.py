"""The key-management area as a whole: each check's claims, and every check against the real
reference service, clean and with each key fault.

Each check is called directly (the self-test pattern), with a real evidence recorder, the
stack's ``target.toml`` and the default policy. Destructive checks run on stacks of their
own, never on the shared clean stack.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from harness.checkdir import declared_checks
from harness.outcomes import Outcome

from .conftest import assert_no_secret_in, run_check, run_with_fault, small_policy

#: check id -> the check function, imported from its module.
CHECKS = {ident: getattr(importlib.import_module(f"checks.keys.{check.path.stem}"), check.function)
          for ident, check in declared_checks().items() if ident.startswith("keys.")}


def test_claim_markers_match_the_catalogue() -> None:
    from harness.claims import load_catalogue

    catalogue = load_catalogue()
    assert len(CHECKS) == 8
    for check_id, check in CHECKS.items():
        marked = {claim for mark in check.pytestmark if mark.name == "claims" for claim in mark.args}
        assert marked == set(catalogue.claims_of_check(check_id)), check_id


# Non-destructive checks: PASS on the clean stack.

@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("check_id", ["keys.hsm_custody", "keys.no_key_elsewhere",
                                      "keys.read_at_start"])
def test_passes_on_the_clean_stack(clean_stack, tmp_path: Path, check_id: str) -> None:
    verdict, secrets, evidence_dir = run_check(CHECKS[check_id], clean_stack.profile_path, tmp_path)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert_no_secret_in(evidence_dir, secrets)


# Destructive checks: each on a stack of its own.

@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("check_id", ["keys.jwt_rotation", "keys.db_password_rotation",
                                      "keys.redis_password_rotation", "keys.token_key_rotation"])
def test_rotation_passes_on_a_clean_stack(stack_factory, tmp_path: Path, check_id: str) -> None:
    with stack_factory() as info:
        verdict, secrets, evidence_dir = run_check(CHECKS[check_id], info.profile_path, tmp_path,
                                                   small_policy())
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert_no_secret_in(evidence_dir, secrets)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(("fault", "check_id", "message"), [
    ("jwt-rotation-keeps-sessions", "keys.jwt_rotation",
     "A session token issued before the rotation is still accepted (HTTP 200)"),
    ("db-password-rotation-ignored", "keys.db_password_rotation",
     "The old database password still works after the rotation."),
    ("redis-password-rotation-ignored", "keys.redis_password_rotation",
     "The old Redis password still works after the rotation."),
    ("rotation-drops-requests", "keys.token_key_rotation",
     "requests failed during the rotation window"),
    ("rotation-leaves-rows", "keys.token_key_rotation",
     "channels rows are not readable with the new key ring"),
])
def test_rotation_fails_with_its_fault(stack_factory, tmp_path: Path, fault: str, check_id: str,
                                       message: str) -> None:
    verdict, secrets, evidence_dir, _ = run_with_fault(stack_factory, fault, CHECKS[check_id],
                                                       tmp_path, small_policy())
    assert verdict.outcome is Outcome.FAIL
    assert message in verdict.message
    assert_no_secret_in(evidence_dir, secrets)


@pytest.mark.integration
@pytest.mark.slow
def test_destructive_checks_are_manual_unless_allowed(clean_stack, tmp_path: Path) -> None:
    text = clean_stack.profile_path.read_text().replace("allow_destructive = true",
                                                        "allow_destructive = false")
    profile_path = tmp_path / "target.toml"
    profile_path.write_text(text)
    for check_id in ("keys.token_key_rotation", "keys.jwt_rotation",
                     "keys.db_password_rotation", "keys.redis_password_rotation"):
        verdict, _, _ = run_check(CHECKS[check_id], profile_path, tmp_path)
        assert verdict.outcome is Outcome.MANUAL
        assert "operations.allow_destructive = false" in verdict.message
