"""Diffing two runs: a fault run against a clean run of the same target, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.outcomes import Outcome
from harness.report.diff import Change, classify, diff_dirs, diff_text


@pytest.mark.parametrize(("old", "new", "present_old", "present_new", "change"), [
    (Outcome.PASS, Outcome.FAIL, True, True, Change.NEW_FAIL),
    (None, Outcome.FAIL, False, True, Change.NEW_FAIL),
    (Outcome.ERROR, Outcome.FAIL, True, True, Change.NEW_FAIL),
    (Outcome.PASS, Outcome.ERROR, True, True, Change.NEWLY_UNVERIFIABLE),
    (Outcome.FAIL, Outcome.ERROR, True, True, Change.NEWLY_UNVERIFIABLE),
    (Outcome.FAIL, Outcome.PASS, True, True, Change.FIXED),
    (Outcome.ERROR, Outcome.NOT_APPLICABLE, True, True, Change.FIXED),
    (Outcome.FAIL, Outcome.FAIL, True, True, Change.UNCHANGED),
    (Outcome.PASS, Outcome.WAIVED, True, True, Change.CHANGED),
    (None, Outcome.PASS, False, True, Change.ADDED),
    (Outcome.PASS, None, True, False, Change.GONE),
    (Outcome.FAIL, None, True, True, Change.CHANGED),
])
def test_classify(old, new, present_old, present_new, change) -> None:
    assert classify(old, new, present_old=present_old, present_new=present_new) is change


def test_a_fault_run_after_a_clean_run_is_a_regression(clean_run: Path, fault_run: Path) -> None:
    diff = diff_dirs(clean_run, fault_run)

    assert diff.regression
    new_fails = {d.key for d in diff.findings if d.change is Change.NEW_FAIL}
    assert new_fails == {"transit.tls_versions/TRANSIT-TLS13", "at_rest.password_hashes/REST-PASSWORDS-BCRYPT12",
                         "keys.no_key_elsewhere/KEYS-NOT-ON-DISK",
                         "keys.token_key_rotation/KEYS-ROTATION-NO-DOWNTIME+REST-TOKENS-ROTATION+KEYS-TOKEN-KEY-HSM",
                         "transit.security_headers/TRANSIT-SECURITY-HEADERS"}
    assert [d.key for d in diff.findings if d.change is Change.NEWLY_UNVERIFIABLE] == [
        "at_rest.plaintext_sweep/OVERVIEW-NO-PLAINTEXT"]
    assert diff.count(Change.UNCHANGED) == 22
    claims = {d.key: d.change for d in diff.claims}
    assert claims["TRANSIT-TLS13"] is Change.NEW_FAIL and claims["KEYS-HSM"] is Change.UNCHANGED
    text = diff_text(diff)
    assert text.splitlines()[1].startswith("REGRESSION")
    assert "  new FAIL            transit.tls_versions/TRANSIT-TLS13: PASS -> FAIL" in text
    # Regressions come first, then the rest.
    assert text.index("new FAIL") < text.index("newly unverifiable")


def test_a_clean_run_after_a_fault_run_is_fixed_not_a_regression(clean_run: Path, fault_run: Path) -> None:
    diff = diff_dirs(fault_run, clean_run)

    assert not diff.regression
    assert diff.count(Change.FIXED) == 6
    assert "No regression" in diff_text(diff)


def test_a_run_against_itself_changes_nothing(fault_run: Path) -> None:
    diff = diff_dirs(fault_run, fault_run)

    assert not diff.regression
    assert not diff.changed_findings() and not diff.changed_claims()
