"""Shared by the key checks' tests: hand-made command runs, and running a check as the
plugin would (a real EvidenceRecorder, the stack's ``target.toml``, the default policy)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.commands import CommandResult
from harness.evidence import EvidenceRecorder
from harness.key_classes import load_key_classes
from harness.outcomes import CheckOutcome, Verdict
from harness.platform import platform_for
from harness.policy import Policy, load_policy
from harness.profile import load_profile
from harness.redaction import KnownSecrets

CLASSES = load_key_classes()
POLICY = load_policy()
# Fewer channels than the benchmark default keep the suite quick; more than one
# re-encryption batch (500) so that rotation-leaves-rows has a last batch to skip.
TEST_POLICY_SEED = 700


def cmd(rc: int | None = 0, timed_out: bool = False) -> CommandResult:
    return CommandResult(("rotate",), rc, 4.0, timed_out, ((1.0, '{"rows": 10}'),))


KILLED = CommandResult(("rotate",), None, 30.0, True, timeout_s=30.0)


def run_check(check: Callable[..., None], profile_path: Path, tmp_path: Path,
              policy: Policy | None = None) -> tuple[Verdict, KnownSecrets, Path]:
    """Run one check as the plugin would; its verdict, the secrets learnt and the evidence dir."""
    secrets = KnownSecrets()
    evidence_dir = tmp_path / "evidence" / check.__name__
    recorder = EvidenceRecorder(check.__name__, evidence_dir, secrets)
    profile, policy = load_profile(profile_path), policy or load_policy()
    given = {"profile": profile, "policy": policy, "platform": platform_for(profile, policy),
             "known_secrets": secrets, "evidence": recorder, "key_classes": load_key_classes(),
             "report_dir": tmp_path / "evidence"}
    wanted = inspect.signature(check).parameters
    try:
        check(**{name: given[name] for name in wanted})
    except CheckOutcome as outcome:
        return outcome.verdict, secrets, evidence_dir
    assert recorder.verdict is not None, "the check ended without a verdict"
    return recorder.verdict, secrets, evidence_dir


def run_with_fault(stack_factory: Any, fault: str, check: Callable[..., None], tmp_path: Path,
                   policy: Policy | None = None) -> tuple[Verdict, KnownSecrets, Path, Any]:
    """Run one check on a stack of its own with ``fault``; its verdict, secrets, evidence dir
    and the stack's information (its state directory ...)."""
    with stack_factory(fault) as info:
        return (*run_check(check, info.profile_path, tmp_path, policy), info)


def assert_no_secret_in(evidence_dir: Path, secrets: KnownSecrets) -> None:
    for path in evidence_dir.glob("*"):
        assert secrets.find_in(path.read_bytes()) == [], f"secret in {path}"


def small_policy() -> Policy:
    policy = load_policy()
    return policy.model_copy(update={"rotation": policy.rotation.model_copy(
        update={"seed_channels": TEST_POLICY_SEED})})
