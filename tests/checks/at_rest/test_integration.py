"""at_rest checks against the real reference service: PASS on a clean stack, FAIL under faults.

Each test runs the checks' own probes and judgements (the self-test pattern)
with a canary account, as the plugin would. Faults that break different
checks share a stack to keep the run short; each assertion names the message
its own fault must cause, so a FAIL for another reason would not pass.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from audit_cli import run_cli

from checks.at_rest.backup_codes import backup_codes_verdict
from checks.at_rest.backup_encrypted import backup_encrypted_verdict
from checks.at_rest.backup_retention import backup_retention_verdict
from checks.at_rest.data_inventory import data_inventory_verdict
from checks.at_rest.password_hashes import password_hashes_verdict
from checks.at_rest.plaintext_sweep import plaintext_sweep_verdict
from checks.at_rest.postgres_version import postgres_version_verdict
from checks.at_rest.recovery_tokens import recovery_tokens_verdict
from checks.at_rest.restore_drill import restore_drill_verdict
from checks.at_rest.tokens_fernet import tokens_fernet_verdict
from harness.calibrate import load_expectations
from harness.canaries import CanarySession, MailCapture
from harness.inventory_rules import load_inventory_rules
from harness.outcomes import Outcome, Verdict
from harness.policy import Policy, load_policy
from harness.probes.api import VotrizApi
from harness.probes.backups import observe_backup, observe_drill, observe_retention
from harness.probes.database import open_database
from harness.probes.inventory import observe_inventory
from harness.probes.mfa_codes import (
    observe_backup_codes,
    observe_mfa_rows_before_canary,
    observe_recovery,
)
from harness.probes.passwords import observe_passwords
from harness.probes.plaintext import observe_sweep
from harness.probes.stored_tokens import observe_tokens
from harness.profile import TargetProfile, load_profile
from harness.redaction import KnownSecrets

pytestmark = pytest.mark.integration

# The checks each fault must make FAIL (fixtures/calibration.toml).
EXPECTED = load_expectations()
FAULTS_A = ("token-plaintext", "bcrypt-cost-10", "backup-codes-reusable",
            "recovery-token-reusable", "email-plaintext", "backup-plaintext",
            "backup-retention-broken")
FAULTS_B = ("token-fixed-iv", "backup-codes-shown-again", "recovery-token-plaintext",
            "secrets-in-logs", "restore-drill-broken", "backup-staging-kept")
# Tested on a stack of its own (tests/checks/at_rest/test_tokens_library.py).
FAULTS_OWN_STACK = ("fernet-other-library",)


def audit(profile: TargetProfile, policy: Policy) -> dict[str, Verdict]:
    """Every at_rest check's verdict, in module order, with one canary for the run."""
    known = KnownSecrets()
    verdicts: dict[str, Verdict] = {}
    # As the at-rest conftest does: every user's MFA rows before the canary enrolls.
    before = observe_mfa_rows_before_canary(profile, policy, known)
    with VotrizApi(profile) as api:
        mail = MailCapture(profile, policy)
        try:
            session = CanarySession(api, mail, known)
            with session as canary:
                verdicts["tokens_fernet"] = tokens_fernet_verdict(
                    observe_tokens(profile, policy, known, canary))
                verdicts["password_hashes"] = password_hashes_verdict(
                    observe_passwords(profile, policy, known, canary), policy)
                verdicts["backup_codes"] = backup_codes_verdict(
                    observe_backup_codes(session, profile, policy, known, before.codes_or_raise()))
                verdicts["recovery_tokens"] = recovery_tokens_verdict(
                    observe_recovery(session, profile, policy, known, before.tokens_or_raise()))
                verdicts["data_inventory"] = data_inventory_verdict(
                    observe_inventory(profile, policy, known, canary, load_inventory_rules()))
                with open_database(profile, policy, known) as db:
                    assert db.server is not None
                    verdicts["postgres_version"] = postgres_version_verdict(db.server)
                verdicts["backup_encrypted"] = backup_encrypted_verdict(
                    observe_backup(profile, policy, known))
                verdicts["backup_retention"] = backup_retention_verdict(
                    observe_retention(profile, policy, known))

                def change() -> None:
                    session.ensure_session()
                    session.api.create_brand("votriz-audit drill marker", "audit")

                verdicts["restore_drill"] = restore_drill_verdict(
                    observe_drill(profile, policy, known, change), policy)
                verdicts["plaintext_sweep"] = plaintext_sweep_verdict(
                    observe_sweep(profile, policy, known))
            assert canary.removed, canary.cleanup_note
        finally:
            mail.close()
    return verdicts


@pytest.fixture(scope="module")
def fault_stacks() -> Iterator[dict[str, Path]]:
    """Two stacks with the at-rest faults, split so no two faults touch one check."""
    from system_under_test.local.stack import down, up

    started: list[Path] = []
    profiles: dict[str, Path] = {}
    try:
        for name, faults in (("A", FAULTS_A), ("B", FAULTS_B)):
            state = Path(tempfile.mkdtemp(prefix="sut-stack-", dir="/tmp"))
            started.append(state)
            profiles[name] = up(state, faults).profile_path
        yield profiles
    finally:
        for state in started:
            down(state)


def test_fault_split_covers_every_at_rest_fault_once() -> None:
    at_rest_faults = {f.fault for f in EXPECTED.values()
                      if any(c.startswith("at_rest.") for c in f.checks)}
    assert sorted(FAULTS_A + FAULTS_B + FAULTS_OWN_STACK) == sorted(at_rest_faults)
    for group in (FAULTS_A, FAULTS_B):
        checks = [c for f in group for c in EXPECTED[f].checks]
        assert len(checks) == len(set(checks)), group


def test_clean_stack_passes(clean_stack) -> None:  # type: ignore[no-untyped-def]
    verdicts = audit(load_profile(clean_stack.profile_path), load_policy())
    failing = {name: v.message for name, v in verdicts.items() if v.outcome is not Outcome.PASS}
    assert failing == {}
    assert "canary's 10 tokens (5 platforms) decrypt to exactly what was handed in" in \
        verdicts["tokens_fernet"].message
    assert "the drill reported the backup's counts, not the live ones" in \
        verdicts["restore_drill"].message


EXPECTED_A = {
    "tokens_fernet": "the canary's tokens do not read back as handed in: tiktok access (not_base64)",
    "password_hashes": "do not use work factor 12 (1 at cost 10",
    "backup_codes": "a used code was accepted again (HTTP 200): codes are not one-time",
    "recovery_tokens": "the token worked a second time (HTTP 200): it is not one-time",
    "data_inventory": "users.contact_email (text): stored in plaintext and not on the page's list",
    "backup_encrypted": "it shows pg_dump custom-format header (PGDMP)",
    "backup_retention": "a backup older than 30 days",
}
EXPECTED_B = {
    "tokens_fernet": "token cells share an IV with another cell",
    "backup_codes": "GET /mfa returned 10 of the backup codes again",
    "recovery_tokens": "the stored row holds the token itself, in plaintext",
    "plaintext_sweep": "api.log",
    "restore_drill": "they are the live database's counts at drill time, so nothing was restored",
    "backup_encrypted": "staging/votriz-",
}


@pytest.mark.parametrize(("stack", "expected"), [("A", EXPECTED_A), ("B", EXPECTED_B)])
def test_faults_fail_their_checks(fault_stacks: dict[str, Path], stack: str,
                                  expected: dict[str, str]) -> None:
    verdicts = audit(load_profile(fault_stacks[stack]), load_policy())
    for name, phrase in expected.items():
        verdict = verdicts[name]
        assert verdict.outcome is Outcome.FAIL, (name, verdict.message)
        assert phrase in verdict.message, (name, verdict.message)
    # Each fault's registry entry names the check that just failed.
    faults = FAULTS_A if stack == "A" else FAULTS_B
    assert {c.removeprefix("at_rest.") for f in faults for c in EXPECTED[f].checks} == set(expected)
    assert verdicts["postgres_version"].outcome is Outcome.PASS
    # A staging dump below the store (backup-staging-kept, stack B) is no backup of the retention
    # trial's: once it made the trial plant its copies where the prune never looks.
    if "backup_retention" not in expected:
        assert verdicts["backup_retention"].outcome is Outcome.PASS, verdicts["backup_retention"].message


# --- Through a profile without [capture], as production has it (issue #18) -------------------------

#: The checks that follow the canary: backup codes and the sweep need no mail, recovery tokens
#: read the canary's mail from the profile's real IMAP [mailbox].
CANARY_CHECKS = ("at_rest.backup_codes", "at_rest.recovery_tokens", "at_rest.plaintext_sweep")


def without_capture(profile_path: Path, directory: Path) -> Path:
    """A copy of the stack's profile with its [capture] section removed (its [mailbox] kept)."""
    data = tomllib.loads(profile_path.read_text(encoding="utf-8"))
    del data["capture"]
    assert "mailbox" in data
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "target.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    return directory / "target.toml"


def test_clean_stack_without_capture_observes_every_canary_check(clean_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given the clean stack's profile without the fakes' capture API
    profile = without_capture(clean_stack.profile_path, tmp_path / "p")
    log = clean_stack.state_dir / "mail" / "dovecot.log"
    seen = len(log.read_text(encoding="utf-8", errors="replace"))
    # When the at-rest area runs
    run = run_cli(profile, tmp_path / "r", only=("at_rest",), limit_s=600)
    # Then the canary's checks observe and pass (none is MANUAL for want of mail)
    assert {c: run.outcome(c) for c in CANARY_CHECKS} == dict.fromkeys(CANARY_CHECKS, "PASS"), \
        {c: run.message(c) for c in CANARY_CHECKS}
    assert "of them the canary's" in run.message("at_rest.plaintext_sweep")
    assert "The recovery token reached the canary only in the mail link" in \
        run.message("at_rest.recovery_tokens")
    # And the recovery mail went through the real mailbox: delivered by LMTP, read, expunged
    new = log.read_text(encoding="utf-8", errors="replace")[seen:]
    assert "saved mail to INBOX" in new and "expunged=1" in new


@pytest.mark.parametrize(("stack", "expected"), [
    ("A", {"at_rest.backup_codes": EXPECTED_A["backup_codes"],
           "at_rest.recovery_tokens": EXPECTED_A["recovery_tokens"]}),
    ("B", {"at_rest.plaintext_sweep": EXPECTED_B["plaintext_sweep"]}),
])
def test_faults_still_fail_without_capture(fault_stacks: dict[str, Path], stack: str,
                                           expected: dict[str, str], tmp_path: Path) -> None:
    # Given a faulty stack's profile without [capture] (backup-codes-reusable and
    # recovery-token-reusable on A, secrets-in-logs on B)
    run = run_cli(without_capture(fault_stacks[stack], tmp_path / "p"), tmp_path / "r",
                  only=("at_rest",), limit_s=600)
    # Then each check its fault breaks FAILs, with its own reason
    for check, phrase in expected.items():
        assert run.outcome(check) == "FAIL", (check, run.message(check))
        assert phrase in run.message(check), (check, run.message(check))
