"""at_rest.password_hashes on hand-made observations: both sides, outcome and message."""

from __future__ import annotations

import bcrypt

from checks.at_rest.password_hashes import password_hashes_unavailable, password_hashes_verdict
from harness.column_scans import scan_hash_cells
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.passwords import PasswordObservation
from harness.profile import parse_profile
from harness.sampling import SampleNote

POLICY = load_policy()
DATABASE = '[database]\ndsn = "host=db dbname=votriz user=votriz_auditor"\n'
H12 = bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode()
H10 = H12.replace("$12$", "$10$")


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def test_password_hashes_pass_and_histogram() -> None:
    scan = scan_hash_cells(enumerate([H12, H12], 1), "users.password_hash", 12)
    verdict = password_hashes_verdict(PasswordObservation(scan, "match", 12), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("All 2 password hashes are well-formed bcrypt with work "
                                      "factor 12.")
    assert verdict.details["cost_histogram"] == {"12": 2}


def test_password_hashes_fail_on_cost_10_and_plaintext() -> None:
    scan = scan_hash_cells(enumerate([H12, H10, "hunter22", None], 1),
                           "users.password_hash", 12)
    verdict = password_hashes_verdict(PasswordObservation(scan, "match", 10), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "2 of 4 password hashes are not bcrypt (plaintext_like 1, missing 1" in verdict.message
    assert "1 of 4 bcrypt hashes do not use work factor 12 (1 at cost 10; e.g. row 2: cost 10)" \
        in verdict.message


def test_password_hashes_fail_when_canary_does_not_verify() -> None:
    scan = scan_hash_cells(enumerate([H12], 1), "users.password_hash", 12)
    verdict = password_hashes_verdict(PasswordObservation(scan, "no_match", 12), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "canary's password does not verify against its own row (no_match)" in verdict.message


def test_password_hashes_without_database_are_manual_not_na() -> None:
    verdict = password_hashes_unavailable(_profile(), POLICY)  # type: ignore[arg-type]
    assert verdict is not None and verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("The profile has no [database] section, so "
                                      "users.password_hash cannot be read. By hand:")
    assert "work factor 12 (prefix $2b$12$" in verdict.message
    assert password_hashes_unavailable(_profile(DATABASE), POLICY) is None  # type: ignore[arg-type]


def test_a_sampled_pass_and_a_sampled_fail_say_sampled() -> None:
    sample = SampleNote("users", "TABLESAMPLE BERNOULLI", 1.0, 100_000, True, 1_000)
    good = scan_hash_cells(enumerate([H12] * 1_000, 1), "users.password_hash", 12)
    verdict = password_hashes_verdict(PasswordObservation(good, "match", 12, sample=sample), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("SAMPLED, not every row: 1000 of 100000 rows of users")
    assert "fewer than 0.46% of the password hashes violate" in verdict.message
    assert verdict.details["sampling"]["violating_fraction_below"] == sample.bound
    bad = scan_hash_cells(enumerate([H12, H10], 1), "users.password_hash", 12)
    verdict = password_hashes_verdict(PasswordObservation(bad, "match", 12, sample=sample), POLICY)
    assert verdict.outcome is Outcome.FAIL and verdict.message.startswith("SAMPLED")
