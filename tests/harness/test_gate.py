"""The gate over promises: a run that verified nothing never passes; partial runs say so;
missing attestations block when required; the CLI exits 2 with one line.

The plugin is run through pytester on hand-written checks (their module sits in a folder
``area``, so their ids are ``area.<name>``); the gate itself is tested on hand-made results.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pytester_checks import NOT_APPLICABLE_AND_MANUAL, audit_argv, unreachable_target

from harness.claims import load_catalogue
from harness.outcomes import Outcome
from harness.results import Attestation, CheckResult, WaiverNote, claim_results, summarise

PASSING = '''
import pytest
from harness.outcomes import Verdict

@pytest.mark.claims("TRANSIT-HSTS")
def check_hsts(evidence):
    evidence.conclude(Verdict.passed("HSTS on every sampled response"))
'''

NOT_APPLICABLE_ONLY = "\nimport pytest\n" + NOT_APPLICABLE_AND_MANUAL


def _human_only() -> list[str]:
    """The promises that no check serves: only an attestation can settle them (MANUAL until then)."""
    return [claim.id for claim in load_catalogue().claim if claim.manual and not claim.checks]


def _profile(tmp: Path, attestations: dict[str, Path] | None = None) -> Path:
    lines = []
    if attestations:
        lines.append("[attestations]")
        lines += [f'"{claim}" = "{file}"' for claim, file in attestations.items()]
    return unreachable_target(tmp, *lines)


def _run(pytester: pytest.Pytester, checks: str | None, *extra: str,
         attestations: dict[str, Path] | None = None) -> tuple[pytest.RunResult, dict]:
    if checks is not None:
        # Named as in checks/: transit/hsts.py holds transit.hsts, the one check of TRANSIT-HSTS.
        pytester.makepyfile(**{"transit/hsts" if checks is PASSING else "area/gate_checks": checks})
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    report = pytester.path / "report"
    result = pytester.runpytest(*audit_argv(_profile(pytester.path, attestations), report, *extra))
    return result, json.loads((report / "results.json").read_text())


# --- the plugin: what results.json, JUnit and the terminal say ----------------------------


def test_a_run_that_collected_no_check_is_vacuous_never_passed(pytester: pytest.Pytester) -> None:
    # Given a run in which no check is collected
    result, data = _run(pytester, None)
    summary = data["summary"]
    # Then the gate is vacuous, exit 2, with the reason in one line, and nothing says "passed"
    assert summary["gate"] == "vacuous" and summary["exit_code"] == 2
    assert summary["reason"] == ("nothing was verified: 0 of 36 promises had a check that observed them "
                                 "(no check was collected)")
    assert summary["verified_promises"] == 0 and summary["checks_total"] == 0
    assert not any(r["check_id"] == "harness.run" for r in data["results"])
    result.stdout.fnmatch_lines(["votriz-audit: gate VACUOUS (exit 2): nothing was verified*"])
    html = (pytester.path / "report" / "report.html").read_text()
    assert "Nothing verified" in html and "Gate passed" not in html
    sarif = json.loads((pytester.path / "report" / "results.sarif").read_text())
    assert sarif["runs"][0]["properties"]["gate"] == "vacuous"


def test_a_run_that_deselected_every_check_says_so(pytester: pytest.Pytester) -> None:
    _, data = _run(pytester, PASSING, "-k", "no_such_check")
    assert data["summary"]["gate"] == "vacuous" and data["summary"]["exit_code"] == 2
    assert "(all 1 checks were deselected)" in data["summary"]["reason"]


def test_a_run_whose_checks_are_all_not_applicable_or_manual_is_vacuous(pytester: pytest.Pytester) -> None:
    _, data = _run(pytester, NOT_APPLICABLE_ONLY)
    summary = data["summary"]
    assert summary["gate"] == "vacuous" and summary["exit_code"] == 2
    assert summary["reason"].endswith("(every check that ran ended without an observation: "
                                      "1 NOT_APPLICABLE, 1 MANUAL)")


def test_a_partial_run_says_n_of_m_promises_in_results_and_junit(pytester: pytest.Pytester) -> None:
    # Given one check that verifies one promise
    result, data = _run(pytester, PASSING)
    summary = data["summary"]
    # Then the run passes, and says it judged only some of the page's promises
    assert summary["gate"] == "pass" and summary["exit_code"] == 0
    assert summary["partial"] is True
    # TRANSIT-HSTS, and the promises that only a human can verify (MANUAL).
    judged = 1 + len(_human_only())
    assert summary["scope"] == f"partial: {judged} of 36 promises"
    assert (summary["promises_run"], summary["promises_total"], summary["verified_promises"]) == (judged, 36, 1)
    assert summary["promises"]["PASS"] == 1 and summary["promises"]["MANUAL"] == len(_human_only())
    assert summary["checks"]["PASS"] == 1 and summary["checks_total"] == 1
    result.stdout.fnmatch_lines([f"*gate PASS (exit 0)*Promises (partial: {judged} of 36 promises)*"
                                 f"Checks: 1 PASS.*"])
    suite = ET.parse(pytester.path / "report" / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["scope"] == f"partial: {judged} of 36 promises" and props["partial"] == "true"
    assert props["gate"] == "pass" and props["verified_promises"] == "1"
    html = (pytester.path / "report" / "report.html").read_text()
    assert f"Partial run: {judged} of 36 promises" in html
    assert f'Gate passed <span class="scope-tag">· partial: {judged} of 36 promises</span>' in html


@pytest.mark.parametrize("how", ["option", "policy"])
def test_required_attestations_that_are_missing_exit_2_naming_them(pytester: pytest.Pytester,
                                                                   how: str) -> None:
    # Given a passing check, attestations required, and one of the four human-only promises attested
    attested = pytester.path / "org-reviews.md"
    attested.write_text("Reviewed by the security team, 2026-11.\n")
    extra: list[str] = ["--votriz-require-attestations"]
    if how == "policy":
        policy = pytester.path / "policy.toml"
        policy.write_text('name = "strict"\nversion = "1"\n[gate]\nrequire_attestations = true\n')
        extra = ["--votriz-policy", str(policy)]
    _, data = _run(pytester, PASSING, *extra, attestations={"ORG-SECURITY-REVIEWS": attested})
    summary = data["summary"]
    # Then the gate exits 2 and names the human-only promises still missing theirs
    missing = [claim_id for claim_id in _human_only() if claim_id != "ORG-SECURITY-REVIEWS"]
    assert missing and "TRANSIT-CLOUDFLARE-EDGE" in missing
    assert summary["gate"] == "unattested" and summary["exit_code"] == 2
    assert summary["attestations_missing"] == missing
    assert summary["reason"] == (f"{len(missing)} promises need an attestation and have none "
                                 f"(attestations are required): {', '.join(missing)}")


def test_without_the_requirement_missing_attestations_are_listed_but_pass(pytester: pytest.Pytester) -> None:
    _, data = _run(pytester, PASSING)
    summary = data["summary"]
    assert summary["gate"] == "pass"
    assert "TRANSIT-CLOUDFLARE-EDGE" in summary["attestations_missing"]
    assert "need an attestation" in summary["reason"]


# --- the gate on hand-made results ----------------------------------------------------------


def _result(check_id: str, outcome: Outcome, waiver: WaiverNote | None = None) -> CheckResult:
    claims = load_catalogue().claims_of_check(check_id)
    return CheckResult(finding_id=f"{check_id}/{'+'.join(claims)}", check_id=check_id, claims=claims,
                       outcome=outcome, message="m", waiver=waiver)


def test_gate_order_fail_then_error_then_vacuous_then_unattested_then_pass() -> None:
    catalogue = load_catalogue()

    def gate(*results: CheckResult, required: bool = False) -> str:
        return summarise(list(results), claim_results(catalogue, results, {}),
                         require_attestations=required).gate

    hsts_pass = _result("transit.hsts", Outcome.PASS)
    assert gate(hsts_pass, _result("transit.security_headers", Outcome.FAIL),
                _result("at_rest.postgres_version", Outcome.ERROR)) == "fail"
    assert gate(hsts_pass, _result("at_rest.postgres_version", Outcome.ERROR)) == "error"
    assert gate(_result("at_rest.postgres_version", Outcome.ERROR)) == "error"
    assert gate(_result("containers.isolation", Outcome.NOT_APPLICABLE)) == "vacuous"
    assert gate() == "vacuous"
    assert gate(hsts_pass, required=True) == "unattested"
    assert gate(hsts_pass) == "pass"


def test_a_check_that_can_only_say_manual_makes_its_promise_need_an_attestation() -> None:
    # keys.hsm_hardware is MANUAL on a software token: the promises it serves need a human
    # although the catalogue has no manual text for them, and --require-attestations blocks.
    catalogue = load_catalogue()
    results = [_result("transit.hsts", Outcome.PASS), _result("keys.hsm_custody", Outcome.PASS),
               _result("keys.hsm_hardware", Outcome.MANUAL)]
    claims = claim_results(catalogue, results, {})
    hardware_claims = {c.id for c in claims if "keys.hsm_hardware" in c.checks and not c.manual
                       and c.outcome is Outcome.MANUAL}
    assert hardware_claims, "keys.hsm_hardware serves no promise without a manual text"
    summary = summarise(results, claims, require_attestations=True)
    assert summary.gate == "unattested"
    assert hardware_claims <= set(summary.attestations_missing)
    assert summarise(results, claims).gate == "pass"
    # An attestation given for a promise whose check still says MANUAL (a software token the
    # attestation cannot make hardware) does not lift the requirement.
    attested = {claim: Attestation(path="trust-me.md", sha256="00" * 32) for claim in hardware_claims}
    summary = summarise(results, claim_results(catalogue, results, attested), require_attestations=True)
    assert summary.gate == "unattested" and hardware_claims <= set(summary.attestations_missing)


def test_a_waived_fail_was_observed_but_a_waived_error_was_not() -> None:
    catalogue = load_catalogue()
    note = WaiverNote(applied=True, original_outcome=Outcome.FAIL, justification="j", approved_by="a",
                      expires="2999-01-01")
    waived_fail = _result("transit.hsts", Outcome.WAIVED, note)
    waived_error = _result("transit.hsts", Outcome.WAIVED,
                           note.model_copy(update={"original_outcome": Outcome.ERROR}))
    assert summarise([waived_fail], claim_results(catalogue, [waived_fail], {})).gate == "pass"
    assert summarise([waived_error], claim_results(catalogue, [waived_error], {})).gate == "vacuous"


def test_a_promise_is_not_judged_on_part_of_its_checks() -> None:
    catalogue = load_catalogue()
    one_of_two = [_result("transit.tls_versions", Outcome.PASS)]
    tls13 = next(c for c in claim_results(catalogue, one_of_two, {}) if c.id == "TRANSIT-TLS13")
    assert tls13.outcome is None and tls13.checks_not_run == ("transit.certificate",)
    assert not tls13.verified
    # A FAIL of the checks that ran is enough to call it broken.
    broken = [_result("transit.tls_versions", Outcome.FAIL)]
    tls13 = next(c for c in claim_results(catalogue, broken, {}) if c.id == "TRANSIT-TLS13")
    assert tls13.outcome is Outcome.FAIL and tls13.verified


def test_checks_that_cover_no_promise_completely_verify_nothing() -> None:
    catalogue = load_catalogue()
    results = [_result("transit.tls_versions", Outcome.PASS)]
    summary = summarise(results, claim_results(catalogue, results, {}))
    assert summary.gate == "vacuous"
    assert summary.reason.endswith("(the checks that ran settled no promise: each still has a check that "
                                   "did not run or needs an attestation)")


def test_a_check_that_sees_part_of_a_promise_needing_a_human_does_not_verify_it() -> None:
    catalogue = load_catalogue()
    results = [_result("transit.certificate", Outcome.PASS)]
    renewed = next(c for c in claim_results(catalogue, results, {}) if c.id == "TRANSIT-CERT-RENEWED")
    assert renewed.outcome is Outcome.MANUAL and not renewed.verified
    attested = {"TRANSIT-CERT-RENEWED": Attestation(path="renewal.md", sha256="00" * 32)}
    renewed = next(c for c in claim_results(catalogue, results, attested) if c.id == "TRANSIT-CERT-RENEWED")
    assert renewed.outcome is Outcome.PASS and renewed.verified


def test_an_attestation_alone_verifies_nothing_by_machine() -> None:
    catalogue = load_catalogue()
    attestation = Attestation(path="a.md", sha256="00" * 32)
    claims = claim_results(catalogue, [], {"ORG-SECURITY-REVIEWS": attestation})
    reviews = next(c for c in claims if c.id == "ORG-SECURITY-REVIEWS")
    assert reviews.outcome is Outcome.PASS and not reviews.verified
    assert summarise([], claims).gate == "vacuous"


# --- the command line -----------------------------------------------------------------------


def test_cli_exits_2_with_one_line_when_no_check_is_collected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli, cli_run

    # Given a checks directory with no check in it
    empty = tmp_path / "checks"
    empty.mkdir()
    (empty / "__init__.py").write_text("")
    monkeypatch.setattr(cli_run, "CHECKS_DIR", empty)
    profile = unreachable_target(tmp_path, backend=None)
    report = tmp_path / "report"
    # When the run starts
    code = cli.main(["run", "--target", str(profile), "--report-dir", str(report)])
    # Then it exits 2 with one line saying nothing was verified, and the bundle says so too
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert ("votriz-audit: nothing was verified: 0 of 36 promises had a check that observed them "
            "(no check was collected)") in err.splitlines()
    assert "Traceback" not in err
    assert json.loads((report / "results.json").read_text())["summary"]["gate"] == "vacuous"
    assert "Nothing verified" in (report / "report.html").read_text()
