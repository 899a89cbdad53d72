"""at_rest.backup_codes and at_rest.recovery_tokens on every user's rows as found, on a real
local stack: PASS clean, FAIL on violations planted by SQL into a user that is not the canary.

The violations are the calibration's own (``system_under_test/violations/mfa.py``),
applied to the shared clean stack as an auditor would (superuser SQL over the
stack's socket). Each makes its own user through the API; the test removes that
user again (its rows cascade), so the stack is clean for the tests after it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from checks.at_rest.backup_codes import backup_codes_verdict, codes_without_canary_verdict
from checks.at_rest.recovery_tokens import recovery_tokens_verdict, tokens_without_canary_verdict
from harness.canaries import CanarySession, MailCapture
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.api import VotrizApi
from harness.probes.database import open_database
from harness.probes.mfa_codes import (
    observe_backup_codes,
    observe_codes_as_found,
    observe_mfa_rows_before_canary,
    observe_recovery,
    observe_tokens_as_found,
)
from harness.profile import TargetProfile, load_profile
from harness.redaction import KnownSecrets
from system_under_test.violations import VIOLATIONS, RunningStack

pytestmark = pytest.mark.integration

POLICY = load_policy()
NO_CANARY = "this test follows no canary"


def superuser(info) -> psycopg.Connection:  # type: ignore[no-untyped-def]
    """The stack's database as the superuser, over its private socket (as an auditor by hand)."""
    return psycopg.connect(f"host={info.state_dir / 'run'} port={info.ports.postgres} "
                           "dbname=votriz user=postgres", autocommit=True)


def remove_user(info, user_id: int) -> None:  # type: ignore[no-untyped-def]
    with superuser(info) as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (user_id,))


def newest_user(info) -> int:  # type: ignore[no-untyped-def]
    with superuser(info) as conn:
        row = conn.execute("SELECT max(id) FROM users").fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


@pytest.fixture
def mfa_user(clean_stack) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """A user (not the canary) made through the API with MFA on and one code redeemed."""
    profile = load_profile(clean_stack.profile_path)
    email, password = f"mfa-user-{secrets.token_hex(6)}@example.com", secrets.token_urlsafe(18)
    with VotrizApi(profile) as api:
        user_id = int(api.signup(email, password).body["id"])
        try:
            api.login(email, password)
            codes = api.mfa_setup().body["backup_codes"]
            assert api.redeem_backup_code(codes[0]).status == 200
            yield user_id
        finally:
            remove_user(clean_stack, user_id)


def test_the_service_writes_a_set_in_one_transaction_and_only_sets_used_at(  # type: ignore[no-untyped-def]
        clean_stack, mfa_user: int) -> None:
    # The facts the xmin rule rests on, observed on the real service: the unused
    # rows of a set share one xmin (its insert), the redeemed row has a later one.
    with superuser(clean_stack) as conn:
        rows = conn.execute("SELECT used_at IS NULL, xmin::text::bigint, age(xmin), created_at"
                            " FROM mfa_backup_codes WHERE user_id = %s", (mfa_user,)).fetchall()
    unused = [r for r in rows if r[0]]
    used = [r for r in rows if not r[0]]
    assert len(unused) == 9 and len(used) == 1
    assert len({r[1] for r in unused}) == 1
    assert used[0][1] != unused[0][1] and used[0][2] < unused[0][2]
    assert len({r[3] for r in rows}) == 1


def _full_audit(profile: TargetProfile) -> tuple[object, object]:
    """Both checks' verdicts with a canary, as the plugin runs them."""
    known = KnownSecrets()
    # As the at-rest conftest does: every user's rows before the canary enrolls.
    before = observe_mfa_rows_before_canary(profile, POLICY, known)
    with VotrizApi(profile) as api:
        mail = MailCapture(profile, POLICY)
        try:
            session = CanarySession(api, mail, known)
            with session:
                codes = backup_codes_verdict(observe_backup_codes(
                    session, profile, POLICY, known, before.codes_or_raise()))
                tokens = recovery_tokens_verdict(observe_recovery(
                    session, profile, POLICY, known, before.tokens_or_raise()))
        finally:
            mail.close()
    return codes, tokens


def test_clean_stack_passes_every_users_rows(clean_stack, mfa_user: int) -> None:  # type: ignore[no-untyped-def]
    # Given the store as the audit will find it: the user's 10 rows (one redeemed), beside any
    # rows other tests on the shared stack left (their order differs from run to run)
    with superuser(clean_stack) as conn:
        held, unused, users = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE used_at IS NULL), count(DISTINCT user_id)"
            " FROM mfa_backup_codes").fetchone()
        mine = conn.execute("SELECT count(*), count(*) FILTER (WHERE used_at IS NULL)"
                            " FROM mfa_backup_codes WHERE user_id = %s", (mfa_user,)).fetchone()
    assert mine == (10, 9)
    codes, tokens = _full_audit(load_profile(clean_stack.profile_path))
    assert codes.outcome is Outcome.PASS, codes.message  # type: ignore[attr-defined]
    # Every row held, the user's among them, judged before the canary enrolled: never the canary's.
    assert f"As found, the {held} code rows ({unused} unused) of {users} user{'' if users == 1 else 's'} " \
        f"are bcrypt at cost 10 or more (cost 12: {held})" in codes.message  # type: ignore[attr-defined]
    assert tokens.outcome is Outcome.PASS, tokens.message  # type: ignore[attr-defined]
    assert "none is valid for longer than 900 s" in tokens.message  # type: ignore[attr-defined]


def test_as_found_counts_only_what_the_store_held_before_the_canary(  # type: ignore[no-untyped-def]
        clean_stack) -> None:
    # Given the clean stack's code and token rows (as other tests on the shared stack left them)
    with superuser(clean_stack) as conn:
        codes_held, codes_unused = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE used_at IS NULL) FROM mfa_backup_codes").fetchone()
        tokens_held = conn.execute("SELECT count(*) FROM recovery_tokens").fetchone()[0]
    # When both checks run with a canary that enrolls and asks for recovery tokens
    codes, tokens = _full_audit(load_profile(clean_stack.profile_path))
    # Then "as found" counts the rows the store held, not the canary's 10 codes and tokens
    assert codes.outcome is Outcome.PASS, codes.message  # type: ignore[attr-defined]
    assert f"As found, the {codes_held} code rows ({codes_unused} unused) of " \
        in codes.message  # type: ignore[attr-defined]
    assert f"As found, the {tokens_held} recovery-token rows" \
        in tokens.message  # type: ignore[attr-defined]
    if codes_held == 0:
        assert "As found, the 0 code rows (0 unused) of 0 users" \
            in codes.message  # type: ignore[attr-defined]


def _row_ids(info, user_id: int, where: str = "true") -> list[int]:  # type: ignore[no-untyped-def]
    with superuser(info) as conn:
        return [int(r[0]) for r in conn.execute(
            f"SELECT id FROM mfa_backup_codes WHERE user_id = %s AND {where} ORDER BY id",
            (user_id,))]


@pytest.mark.parametrize("violation", ["mfa-code-unused-again", "mfa-code-row-duplicated",
                                       "mfa-code-eleventh"])
def test_planted_code_rows_fail(clean_stack, violation: str) -> None:  # type: ignore[no-untyped-def]
    profile = load_profile(clean_stack.profile_path)
    # Given a user of the service (not the canary) whose code rows were changed by SQL
    before = newest_user(clean_stack)
    VIOLATIONS[violation].apply(RunningStack.open(clean_stack.state_dir))
    user_id = newest_user(clean_stack)
    assert user_id > before
    try:
        rows = _row_ids(clean_stack, user_id)
        # When every user's code rows are judged as found
        with open_database(profile, POLICY, KnownSecrets()) as db:
            verdict = codes_without_canary_verdict(observe_codes_as_found(db, POLICY), NO_CANARY)
        # Then the check FAILs naming that user and the rows, never a value
        assert verdict.outcome is Outcome.FAIL, verdict.message
        if violation == "mfa-code-unused-again":
            assert len(rows) == 10 and not _row_ids(clean_stack, user_id, "used_at IS NOT NULL")
            assert "1 unused code row rewritten after issue (PostgreSQL's xmin is not its " \
                   "issue's transaction: a redeemed code marked unused again, or a row copied " \
                   f"in): user {user_id} (row " in verdict.message
        elif violation == "mfa-code-row-duplicated":
            assert len(rows) == 11
            assert "2 code rows store a hash string another row stores too (bcrypt salts every " \
                   "hash, so an identical string is a copied row): " \
                   f"user {user_id} (rows {rows[0]}, {rows[-1]})" in verdict.message
            assert "1 unused code row rewritten after issue" in verdict.message
            assert f"user {user_id} (row {rows[-1]})" in verdict.message
            assert f"user {user_id} (11 rows from 1 issue)" in verdict.message
        else:
            assert len(rows) == 11
            assert "1 user hold more than the 10 codes the service issues at once, or codes " \
                   f"of more than one issue: user {user_id} (11 rows from 2 issues)" \
                   in verdict.message
        assert "$2" not in verdict.message
    finally:
        remove_user(clean_stack, user_id)
    # And with that user gone the rows as found are clean again
    with open_database(profile, POLICY, KnownSecrets()) as db:
        after = codes_without_canary_verdict(observe_codes_as_found(db, POLICY), NO_CANARY)
    assert after.outcome is Outcome.MANUAL, after.message


def test_planted_long_lived_recovery_token_fails(clean_stack) -> None:  # type: ignore[no-untyped-def]
    profile = load_profile(clean_stack.profile_path)
    VIOLATIONS["recovery-token-long-lived"].apply(RunningStack.open(clean_stack.state_dir))
    user_id = newest_user(clean_stack)
    try:
        with open_database(profile, POLICY, KnownSecrets()) as db:
            verdict = tokens_without_canary_verdict(observe_tokens_as_found(db, POLICY), NO_CANARY)
        assert verdict.outcome is Outcome.FAIL, verdict.message
        assert "1 recovery token valid for longer than 900 s after it was made (expires_at - " \
               f"created_at): user {user_id} (row " in verdict.message
    finally:
        remove_user(clean_stack, user_id)


MFA_VIOLATIONS = ("mfa-code-unused-again", "mfa-code-row-duplicated", "mfa-code-eleventh",
                  "recovery-token-long-lived")


def test_the_cli_fails_both_checks_on_the_violations_applied_by_the_backend(  # type: ignore[no-untyped-def]
        clean_stack, tmp_path) -> None:
    from audit_cli import run_cli

    from system_under_test.backends import BACKENDS

    # Given the four MFA violations applied to the running stack, as calibrate applies them
    planted = []
    try:
        for name in MFA_VIOLATIONS:
            BACKENDS["local"].apply_violation(clean_stack.state_dir, name)
            planted.append(newest_user(clean_stack))
        # When the at-rest area is audited through the real CLI
        run = run_cli(clean_stack.profile_path, tmp_path / "report", only=["at_rest"],
                      limit_s=600)
    finally:
        for user_id in planted:
            remove_user(clean_stack, user_id)
    # Then both checks FAIL naming the planted users, and no other at-rest check FAILs
    codes, tokens = run.results["at_rest.backup_codes"], run.results["at_rest.recovery_tokens"]
    assert codes[0] == "FAIL", codes
    assert tokens[0] == "FAIL", tokens
    for user_id in planted[:3]:
        assert f"user {user_id} (" in codes[1], codes
    assert f"user {planted[3]} (row " in tokens[1], tokens
    others = {c: r for c, r in run.results.items()
              if r[0] == "FAIL" and c not in ("at_rest.backup_codes", "at_rest.recovery_tokens")}
    assert others == {}
    assert run.returncode == 1
