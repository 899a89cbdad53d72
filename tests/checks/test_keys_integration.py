"""Key-management checks against the real reference service, clean and with each key fault.

Each check is called directly (the self-test pattern), with a real evidence
recorder, the stack's ``target.toml`` and the default policy. Destructive
checks run on stacks of their own, never on the shared clean stack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

import checks.keys as keys
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome, Verdict
from harness.policy import Policy, load_policy
from harness.profile import load_profile
from harness.redaction import KnownSecrets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Fewer channels than the benchmark default keep the suite quick; more than one
# re-encryption batch (500) so that rotation-leaves-rows has a last batch to skip.
TEST_POLICY_SEED = 700


def run_check(check: Callable[..., None], profile_path: Path, tmp_path: Path,
              policy: Policy | None = None) -> tuple[Verdict, KnownSecrets, Path]:
    """Run one check as the plugin would; its verdict, the secrets learnt and the evidence dir."""
    secrets = KnownSecrets()
    evidence_dir = tmp_path / "evidence" / check.__name__
    recorder = EvidenceRecorder(check.__name__, evidence_dir, secrets)
    given = {"profile": load_profile(profile_path), "policy": policy or load_policy(),
             "known_secrets": secrets, "evidence": recorder, "key_classes": keys.load_key_classes(),
             "report_dir": tmp_path / "evidence"}
    wanted = inspect.signature(check).parameters
    try:
        check(**{name: given[name] for name in wanted})
    except CheckOutcome as outcome:
        return outcome.verdict, secrets, evidence_dir
    assert recorder.verdict is not None, "the check ended without a verdict"
    return recorder.verdict, secrets, evidence_dir


def assert_no_secret_in(evidence_dir: Path, secrets: KnownSecrets) -> None:
    for path in evidence_dir.glob("*"):
        assert secrets.find_in(path.read_bytes()) == [], f"secret in {path}"


def small_policy() -> Policy:
    policy = load_policy()
    return policy.model_copy(update={"rotation": policy.rotation.model_copy(
        update={"seed_channels": TEST_POLICY_SEED})})


# Non-destructive checks: PASS on the clean stack.

@pytest.mark.parametrize("check", [keys.check_hsm_custody, keys.check_no_key_elsewhere,
                                   keys.check_read_at_start])
def test_passes_on_the_clean_stack(clean_stack, tmp_path: Path, check) -> None:
    verdict, secrets, evidence_dir = run_check(check, clean_stack.profile_path, tmp_path)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert_no_secret_in(evidence_dir, secrets)


def test_custody_fails_when_redis_password_is_not_in_the_hsm(stack_factory, tmp_path: Path) -> None:
    with stack_factory("key-not-in-hsm") as info:
        verdict, _, _ = run_check(keys.check_hsm_custody, info.profile_path, tmp_path)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Not in the HSM: Redis password (expected votriz/redis/password)."


def test_no_key_elsewhere_fails_on_key_in_env(stack_factory, tmp_path: Path) -> None:
    with stack_factory("key-in-env") as info:
        verdict, secrets, evidence_dir = run_check(keys.check_no_key_elsewhere, info.profile_path,
                                                   tmp_path)
    assert verdict.outcome is Outcome.FAIL
    assert "votriz/token-encryption/v1" in verdict.message and " in env api" in verdict.message
    assert_no_secret_in(evidence_dir, secrets)


def test_no_key_elsewhere_fails_on_key_in_config(stack_factory, tmp_path: Path) -> None:
    with stack_factory("key-in-config") as info:
        verdict, secrets, evidence_dir = run_check(keys.check_no_key_elsewhere, info.profile_path,
                                                   tmp_path)
    assert verdict.outcome is Outcome.FAIL
    assert f"votriz/api/stripe (raw) in config {info.state_dir / 'api.toml'}:" in verdict.message
    assert_no_secret_in(evidence_dir, secrets)


def test_read_at_start_fails_on_pin_in_env(stack_factory, tmp_path: Path) -> None:
    with stack_factory("pin-in-env") as info:
        verdict, secrets, evidence_dir = run_check(keys.check_read_at_start, info.profile_path,
                                                   tmp_path)
    assert verdict.outcome is Outcome.FAIL
    assert "HSM user PIN (raw) in env api" in verdict.message
    assert_no_secret_in(evidence_dir, secrets)


# Destructive checks: each on a stack of its own.

@pytest.mark.parametrize("check", [keys.check_jwt_rotation, keys.check_db_password_rotation,
                                   keys.check_redis_password_rotation,
                                   keys.check_token_key_rotation])
def test_rotation_passes_on_a_clean_stack(stack_factory, tmp_path: Path, check) -> None:
    with stack_factory() as info:
        verdict, secrets, evidence_dir = run_check(check, info.profile_path, tmp_path,
                                                   small_policy())
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert_no_secret_in(evidence_dir, secrets)


@pytest.mark.parametrize(("fault", "check", "message"), [
    ("jwt-rotation-keeps-sessions", keys.check_jwt_rotation,
     "A session token issued before the rotation is still accepted (HTTP 200)"),
    ("db-password-rotation-ignored", keys.check_db_password_rotation,
     "The old database password still works after the rotation."),
    ("redis-password-rotation-ignored", keys.check_redis_password_rotation,
     "The old Redis password still works after the rotation."),
    ("rotation-drops-requests", keys.check_token_key_rotation,
     "requests failed during the rotation window"),
    ("rotation-leaves-rows", keys.check_token_key_rotation,
     "channels rows are not readable with the new key ring"),
])
def test_rotation_fails_with_its_fault(stack_factory, tmp_path: Path, fault: str, check,
                                       message: str) -> None:
    with stack_factory(fault) as info:
        verdict, secrets, evidence_dir = run_check(check, info.profile_path, tmp_path,
                                                   small_policy())
    assert verdict.outcome is Outcome.FAIL
    assert message in verdict.message
    assert_no_secret_in(evidence_dir, secrets)


def test_destructive_checks_are_manual_unless_allowed(clean_stack, tmp_path: Path) -> None:
    text = clean_stack.profile_path.read_text().replace("allow_destructive = true",
                                                        "allow_destructive = false")
    profile_path = tmp_path / "target.toml"
    profile_path.write_text(text)
    for check in (keys.check_token_key_rotation, keys.check_jwt_rotation,
                  keys.check_db_password_rotation, keys.check_redis_password_rotation):
        verdict, _, _ = run_check(check, profile_path, tmp_path)
        assert verdict.outcome is Outcome.MANUAL
        assert "operations.allow_destructive = false" in verdict.message
