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
    # A promise judged before and not run now is gone: a run that checks less is a regression.
    (Outcome.FAIL, None, True, True, Change.GONE),
    (None, None, True, True, Change.UNCHANGED),
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
    assert diff.count(Change.UNCHANGED) == len(diff.findings) - 6
    claims = {d.key: d.change for d in diff.claims}
    assert claims["TRANSIT-TLS13"] is Change.NEW_FAIL and claims["KEYS-HSM"] is Change.UNCHANGED
    text = diff_text(diff)
    assert text.splitlines()[0] == (f"votriz-audit diff: {clean_run} (run {diff.old_run.run_id}) -> "
                                    f"{fault_run} (run {diff.new_run.run_id})")
    assert diff.old_run.run_id != diff.new_run.run_id
    assert text.splitlines()[1].startswith("REGRESSION")
    assert "  new FAIL            transit.tls_versions/TRANSIT-TLS13: PASS -> FAIL" in text
    # Regressions come first, then the rest.
    assert text.index("  new FAIL ") < text.index("  newly unverifiable ")


def test_a_clean_run_after_a_fault_run_is_fixed_not_a_regression(clean_run: Path, fault_run: Path) -> None:
    diff = diff_dirs(fault_run, clean_run)

    assert not diff.regression
    assert diff.count(Change.FIXED) == 6
    assert "No regression" in diff_text(diff)


def test_a_run_against_itself_changes_nothing(fault_run: Path) -> None:
    diff = diff_dirs(fault_run, fault_run)

    assert not diff.regression
    assert not diff.changed_findings() and not diff.changed_claims()


def _empty_run(report_dir: Path, like: Path) -> Path:
    """The same target's run in which no check was collected (a vacuous run)."""
    from harness.claims import load_catalogue
    from harness.report.layout import load_results
    from harness.results import claim_results, summarise, write_results_json

    full = load_results(like)
    claims = claim_results(load_catalogue(), [], {})
    report_dir.mkdir()
    write_results_json(full.model_copy(update={"run_id": "empty0000001", "results": (),
                                               "claims": tuple(claims), "summary": summarise([], claims)}),
                       report_dir / "results.json")
    return report_dir


def test_checks_and_promises_gone_from_the_new_run_are_a_regression_named(
        tmp_path: Path, clean_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    # Given a full clean run, then a run of the same target that collected no check
    empty = _empty_run(tmp_path / "empty", clean_run)
    diff = diff_dirs(clean_run, empty)
    # Then every finding of the old run, and every promise it judged by a check, is gone: a regression
    gone_findings = {d.key for d in diff.findings if d.change is Change.GONE}
    assert gone_findings == {d.key for d in diff.findings} and len(gone_findings) >= 28
    gone_claims = {d.key for d in diff.claims if d.change is Change.GONE}
    assert "TRANSIT-TLS13" in gone_claims and "KEYS-HSM" in gone_claims
    # (a promise only a human can settle is still MANUAL in both runs)
    assert "ORG-SECURITY-REVIEWS" not in gone_claims
    assert diff.regression
    # And `diff` exits 1, naming them
    assert main(["diff", str(clean_run), str(empty)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1] == (f"REGRESSION: {len(gone_findings)} findings gone, "
                                   f"{len(gone_claims)} promises gone.")
    assert "transit.tls_versions/TRANSIT-TLS13" in out.splitlines()[2]
    assert "  gone                transit.hsts/TRANSIT-HSTS: PASS -> —" in out
    # The other way round nothing is lost: no regression
    assert main(["diff", str(empty), str(clean_run)]) == 0


def test_the_report_comparison_names_what_is_gone(tmp_path: Path, clean_run: Path) -> None:
    from harness.report.html import write_report

    empty = _empty_run(tmp_path / "empty", clean_run)
    html = write_report(empty, diff=diff_dirs(clean_run, empty)).read_text()
    section = html[html.index('id="diff-h"'):html.index('id="claims"')]
    assert "✗ REGRESSION" in section and "findings gone" in section
    assert "Gone (judged in the earlier run, not in this one)" in section
    assert "transit.hsts/TRANSIT-HSTS" in section
