"""The pytest plugin, run through pytester: outcomes, results.json, junit.xml, waivers, leaks."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pytester_checks import (
    NOT_APPLICABLE_AND_MANUAL,
    PASS_FAIL_AND_PROBE_ERROR,
    audit_argv,
    unreachable_target,
)

from harness.plugin import plugin_args

CHECKS = PASS_FAIL_AND_PROBE_ERROR + NOT_APPLICABLE_AND_MANUAL + '''
@pytest.mark.claims("REST-DB-PG15")
def check_forgets_verdict(evidence):
    evidence.attach("note", "looked, concluded nothing")

@pytest.mark.claims("REST-PASSWORDS-BCRYPT12")
def check_crashes(evidence):
    {}["missing"]
'''


def _run(pytester: pytest.Pytester, checks: str, *extra: str) -> tuple[pytest.RunResult, Path]:
    # The checks' module sits in an area's folder, as in checks/<area>/: their ids are area.<name>.
    pytester.makepyfile(**{"area/endings": checks})
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    report = pytester.path / "report"
    result = pytester.runpytest(*audit_argv(unreachable_target(pytester.path), report, *extra))
    return result, report


def _by_name(report: Path) -> dict[str, dict]:
    data = json.loads((report / "results.json").read_text())
    return {r["check_id"].split(".", 1)[1]: r for r in data["results"]}


def test_each_kind_of_ending_maps_to_its_own_outcome(pytester: pytest.Pytester) -> None:
    # Given checks that pass, fail, hit a probe error, forget their verdict, are N/A, MANUAL, crash
    result, report = _run(pytester, CHECKS)
    # Then each has its own outcome and reason
    results = _by_name(report)
    assert results["passes"]["outcome"] == "PASS"
    assert results["passes"]["evidence"] == ["evidence/area.passes/observed.json"]
    assert results["fails"]["outcome"] == "FAIL"
    assert "Strict-Transport-Security" in results["fails"]["message"]
    assert results["probe_error"]["outcome"] == "ERROR"
    assert results["probe_error"]["message"] == "edge 127.0.0.1:9 refused the connection"
    assert results["forgets_verdict"]["outcome"] == "ERROR"
    assert "without reaching a verdict" in results["forgets_verdict"]["message"]
    assert results["not_applicable"]["outcome"] == "NOT_APPLICABLE"
    assert results["manual"]["outcome"] == "MANUAL"
    assert results["crashes"]["outcome"] == "ERROR"
    assert results["crashes"]["message"].startswith("KeyError in the check")
    # And the live output names every check with its outcome
    result.stdout.fnmatch_lines(["*PASS*area.passes*", "*FAIL*area.fails*", "*gate FAIL*"])


def test_results_json_carries_versions_gate_and_claims(pytester: pytest.Pytester) -> None:
    _, report = _run(pytester, CHECKS)
    data = json.loads((report / "results.json").read_text())
    assert data["schema_version"] == 2
    assert data["tool"] == "votriz-audit" and data["tool_version"]
    assert data["summary"]["gate"] == "fail" and data["summary"]["exit_code"] == 1
    assert data["policy"]["tls"]["allowed_versions"] == ["TLSv1.3"]
    claims = {c["id"]: c for c in data["claims"]}
    assert claims["TRANSIT-HSTS"]["outcome"] == "FAIL"
    # A claim that needs a human stays MANUAL even though part of it was checked.
    assert claims["TRANSIT-CERT-RENEWED"]["outcome"] in ("MANUAL", None)
    # A claim that only a human can verify is MANUAL until attested.
    assert claims["ORG-SECURITY-REVIEWS"]["outcome"] == "MANUAL"
    # Claims whose checks did not (all) run in this run have no outcome, and say which did not.
    assert claims["KEYS-HSM"]["outcome"] is None
    assert "keys.hsm_custody" in claims["KEYS-HSM"]["checks_not_run"]
    # A check that ran does not make a promise PASS while another of its checks did not run.
    assert claims["TRANSIT-TLS13"]["outcome"] is None
    assert claims["TRANSIT-TLS13"]["checks_not_run"] == ["transit.certificate", "transit.tls_versions"]
    # Finding ids are stable: check id and claim ids.
    fails = next(r for r in data["results"] if r["check_id"] == "area.fails")
    assert fails["finding_id"] == "area.fails/TRANSIT-HSTS"


def test_junit_has_one_case_per_check_with_claims(pytester: pytest.Pytester) -> None:
    _, report = _run(pytester, CHECKS)
    suite = ET.parse(report / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "7" and suite.get("failures") == "1" and suite.get("errors") == "3"
    case = next(c for c in suite.iter("testcase") if c.get("name") == "fails")
    assert case.find("failure") is not None
    assert [p.get("value") for p in case.iter("property") if p.get("name") == "claim"] == ["TRANSIT-HSTS"]


def test_gate_is_error_when_nothing_failed_but_something_could_not_verify(pytester: pytest.Pytester) -> None:
    checks = CHECKS.split("@pytest.mark.claims(\"TRANSIT-HSTS\")")[0] + '''
@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
def check_probe_error(broken_probe, evidence):
    evidence.conclude(Verdict.passed("unreachable"))
'''
    _, report = _run(pytester, checks)
    summary = json.loads((report / "results.json").read_text())["summary"]
    assert summary["gate"] == "error" and summary["exit_code"] == 2


def test_unknown_claim_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result, _ = _run(pytester, '''
import pytest
@pytest.mark.claims("NO-SUCH-CLAIM")
def check_x(evidence):
    pass
''')
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown claim(s) NO-SUCH-CLAIM*"])


def test_current_waiver_waives_and_expired_waiver_says_so(pytester: pytest.Pytester) -> None:
    soon = str(dt.date.today() + dt.timedelta(days=30))  # within the policy's waivers.max_days_ahead
    waivers = pytester.path / "waivers.toml"
    waivers.write_text(textwrap.dedent("""
        [[waiver]]
        check = "transit.hsts"
        justification = "HSTS lands with the edge migration, ticket SEC-42"
        approved_by = "CISO"
        expires = 2999-01-01
    """).replace("2999-01-01", soon))
    checks = '''
import pytest
from harness.outcomes import Verdict
@pytest.mark.claims("TRANSIT-HSTS")
def check_hsts(evidence):
    evidence.conclude(Verdict.failed("no HSTS"))
'''
    pytester.makepyfile(**{"transit/hsts": checks})
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    report = pytester.path / "r1"
    pytester.runpytest(*audit_argv(unreachable_target(pytester.path), report, "--votriz-waivers", str(waivers)))
    result = json.loads((report / "results.json").read_text())["results"][0]
    assert result["outcome"] == "WAIVED"
    assert result["waiver"]["original_outcome"] == "FAIL"
    # Given the same waiver, expired
    waivers.write_text(waivers.read_text().replace(soon, "2000-01-01"))
    report = pytester.path / "r2"
    pytester.runpytest(*audit_argv(unreachable_target(pytester.path), report, "--votriz-waivers", str(waivers)))
    result = json.loads((report / "results.json").read_text())["results"][0]
    assert result["outcome"] == "FAIL"
    assert "expired on 2000-01-01" in result["message"]


def test_malformed_waiver_stops_before_any_check(pytester: pytest.Pytester) -> None:
    waivers = pytester.path / "waivers.toml"
    waivers.write_text('[[waiver]]\ncheck = "transit.hsts"\napproved_by = "x"\nexpires = "soon"\n')
    result, report = _run(pytester, CHECKS, "--votriz-waivers", str(waivers))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*waiver[[]0[]].justification: Field required*",
                                 "*waiver[[]0[]].expires: *"])
    assert not (report / "results.json").exists()


def test_registered_secret_is_redacted_and_a_raw_leak_is_found(pytester: pytest.Pytester) -> None:
    checks = '''
import pytest
from harness.outcomes import Verdict
@pytest.mark.claims("REST-PASSWORDS-BCRYPT12")
def check_secretive(evidence, known_secrets, report_dir):
    known_secrets.add("canary-Pa55word-77", "canary password")
    evidence.attach("seen", {"password": "canary-Pa55word-77"})
    (report_dir / "careless.txt").write_text("oops canary-Pa55word-77")
    evidence.conclude(Verdict.failed("found canary-Pa55word-77 in users.password_hash"))
'''
    result, report = _run(pytester, checks)
    assert "canary-Pa55word-77" not in (report / "evidence" / "area.secretive" / "seen.json").read_text()
    assert "canary-Pa55word-77" not in (report / "results.json").read_text()
    assert "canary-Pa55word-77" not in result.stdout.str()
    leaks = (report / "LEAKS.txt").read_text()
    assert "careless.txt" in leaks and "canary password" in leaks
    assert "canary-Pa55word-77" not in leaks
    # And plain pytest exits as `votriz-audit run` does on a leak: 4, whatever the gate said
    assert result.ret == 4


def test_plugin_asked_for_is_inert_without_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)
    assert "votriz-audit:" not in result.stdout.str()


def _help_section(result: pytest.RunResult, heading: str) -> list[str]:
    """The option lines of one group of ``pytest --help``."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    section = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        section.append(line)
    return section


def test_plugin_options_are_prefixed_and_only_there_when_asked_for(pytester: pytest.Pytester) -> None:
    # When pytest is started without asking for the plugin
    plain = pytester.runpytest_subprocess("--help")
    # Then none of its options is there, and no generic --target either
    assert "--votriz-target" not in plain.stdout.str()
    assert not any(line.lstrip().startswith("--target") for line in plain.stdout.lines)
    # When it is asked for
    asked = pytester.runpytest_subprocess(*plugin_args(), "--help")
    # Then every option it adds says whose it is
    options = [line.split()[0].split("=")[0].rstrip(",") for line in _help_section(asked, "votriz-audit:")
               if line.lstrip().startswith("--")]
    assert "--votriz-target" in options and "--votriz-report-dir" in options
    assert [option for option in options if not option.startswith("--votriz-")] == []


def test_checks_past_the_run_time_limit_are_errors_not_passes(pytester: pytest.Pytester) -> None:
    # Given a policy whose whole-run limit is shorter than the first check
    policy = pytester.path / "policy.toml"
    policy.write_text('name = "p"\nversion = "1"\n[timeouts]\nconnect_s = 0.01\nrequest_s = 0.01\nrun_s = 0.2\n')
    checks = '''
import time, pytest
from harness.outcomes import Verdict
@pytest.mark.claims("TRANSIT-TLS13")
def check_slow(evidence):
    time.sleep(0.5)
    evidence.conclude(Verdict.passed("slow but fine"))
@pytest.mark.claims("TRANSIT-HSTS")
def check_after(evidence):
    evidence.conclude(Verdict.passed("would pass"))
'''
    _, report = _run(pytester, checks, "--votriz-policy", str(policy))
    results = _by_name(report)
    assert results["slow"]["outcome"] == "PASS"
    # Then the check that would start after the limit did not run and says why
    assert results["after"]["outcome"] == "ERROR"
    assert "time limit of 0.2 s" in results["after"]["message"]


def test_a_module_that_cannot_load_is_an_error_not_a_pass(pytester: pytest.Pytester) -> None:
    # Given one good check and a checks module whose import fails
    pytester.makepyfile(broken="import no_such_module_for_votriz\n")
    _, report = _run(pytester, '''
import pytest
from harness.outcomes import Verdict
@pytest.mark.claims("TRANSIT-TLS13")
def check_fine(evidence):
    evidence.conclude(Verdict.passed("fine"))
''')
    # Then the run's gate is "error", naming the module and the reason
    data = json.loads((report / "results.json").read_text())
    assert data["summary"]["gate"] == "error" and data["summary"]["exit_code"] == 2
    errors = [r for r in data["results"] if r["check_id"] == "harness.collection"]
    assert len(errors) == 1
    assert "broken.py could not be loaded" in errors[0]["message"]
    assert "no_such_module_for_votriz" in errors[0]["message"]


def _canary_cleanup_fails(check: str, verdict: str, delete_answer: str) -> str:
    """A check module whose one check uses a session canary that cannot be removed after it."""
    return f'''
import pytest
from harness.outcomes import ProbeError, Verdict
@pytest.fixture(scope="session")
def canary():
    yield "c"
    raise ProbeError("DELETE /api/v1/account: {delete_answer}")
@pytest.mark.claims("TRANSIT-HSTS")
def check_{check}(canary, evidence):
    evidence.conclude(Verdict.{verdict})
'''


def test_a_failed_clean_up_is_its_own_error_whatever_the_check_concluded(pytester: pytest.Pytester) -> None:
    # Given a FAILing check whose session fixture cannot clean up after itself
    _, report = _run(pytester, _canary_cleanup_fails("uses_canary", 'failed("no HSTS")',
                                                     "expected HTTP 204, got 500"))
    results = json.loads((report / "results.json").read_text())["results"]
    by_id = {r["check_id"]: r for r in results}
    # Then the check keeps its FAIL and the clean-up failure is reported on its own
    assert by_id["area.uses_canary"]["outcome"] == "FAIL"
    cleanup = by_id["harness.cleanup"]
    assert cleanup["outcome"] == "ERROR"
    assert "clean-up after area.uses_canary failed: DELETE /api/v1/account" in cleanup["message"]


def test_details_are_redacted_everywhere(pytester: pytest.Pytester) -> None:
    _, report = _run(pytester, '''
import pytest
from harness.outcomes import Verdict
@pytest.mark.claims("TRANSIT-HSTS")
def check_details(evidence, known_secrets):
    known_secrets.add("s3cret-rotation-output", "operator output secret")
    evidence.conclude(Verdict.failed("rotation failed", stdout="printed s3cret-rotation-output"))
''')
    for name in ("results.json", "junit.xml"):
        assert "s3cret-rotation-output" not in (report / name).read_text()
    result = json.loads((report / "results.json").read_text())["results"][0]
    assert result["details"]["stdout"].startswith("printed [REDACTED operator output secret")
    assert not (report / "LEAKS.txt").exists()


def test_run_level_problems_are_shown_in_the_report(pytester: pytest.Pytester) -> None:
    _, report = _run(pytester, _canary_cleanup_fails("ok", 'passed("HSTS everywhere")', "got 500"))
    html = (report / "report.html").read_text()
    assert "Problems of the run itself" in html
    assert "clean-up after area.ok failed: DELETE /api/v1/account: got 500" in html


def test_a_message_quoting_terminal_codes_is_printed_escaped(pytester: pytest.Pytester) -> None:
    # Given a check whose message quotes a hostile edge's Server header (cursor up, erase line)
    result, report = _run(pytester, '''
import pytest
from harness.outcomes import Verdict

@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
def check_quotes_the_edge(evidence):
    evidence.conclude(Verdict.failed("Server: nginx/1.25.3\\x1b[1A\\x1b[2K\\rPASS"))
''')
    # Then the run's line shows the codes escaped, none raw; results.json keeps what was observed
    out = "\n".join(result.outlines)
    assert "Server: nginx/1.25.3\\x1b[1A\\x1b[2K\\x0dPASS" in out, out
    assert "\x1b[1A" not in out and "\r" not in out
    assert _by_name(report)["quotes_the_edge"]["message"] == "Server: nginx/1.25.3\x1b[1A\x1b[2K\rPASS"


def test_checks_that_change_the_system_run_after_every_check_that_only_observes(
        pytester: pytest.Pytester) -> None:
    # Given an area whose first check (by id) rotates a key and whose others observe, one
    # of which also needs HSM read access
    checks = '''
import json, pathlib
ORDER = pathlib.Path(__file__).parent / "order.txt"

def _ran(name):
    with ORDER.open("a") as f:
        f.write(name + "\\n")

@pytest.mark.claims("KEYS-NOT-ON-DISK")
@pytest.mark.access("hsm", "destructive")
def check_a_rotates(evidence):
    _ran("a_rotates"); evidence.passed("rotated")

@pytest.mark.claims("KEYS-NOT-ON-DISK")
@pytest.mark.access("files", "destructive")
def check_b_backs_up(evidence):
    _ran("b_backs_up"); evidence.passed("backed up")

@pytest.mark.claims("KEYS-NOT-ON-DISK")
@pytest.mark.access("hsm")
def check_c_searches(evidence):
    _ran("c_searches"); evidence.passed("searched")

@pytest.mark.claims("KEYS-NOT-ON-DISK")
def check_d_reads(evidence):
    _ran("d_reads"); evidence.passed("read")
'''
    _run(pytester, "import pytest\n" + checks)
    # Then the observing checks ran first, each group in its own order
    assert (pytester.path / "area" / "order.txt").read_text().split() == [
        "c_searches", "d_reads", "a_rotates", "b_backs_up"]
