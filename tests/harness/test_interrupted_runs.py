"""An interrupted run lists every check: the one interrupted with how long it ran, each one after
it as not run; none is absent from results.json, and the gate is not a pass."""

from __future__ import annotations

import json
import re
import signal

import pytest
from pytester_checks import audit_argv, unreachable_target

CHECKS = '''
import os
import signal
import time

import pytest
from harness.outcomes import Verdict

@pytest.mark.claims("TRANSIT-TLS13")
def check_first(evidence):
    evidence.conclude(Verdict.passed("only TLS 1.3 accepted"))

@pytest.mark.claims("TRANSIT-HSTS")
def check_interrupted(evidence):
    time.sleep(0.4)
    if HOW == "sigint":
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does
        time.sleep(30)
    raise KeyboardInterrupt

@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
def check_after_1(evidence):
    evidence.conclude(Verdict.passed("never reached"))

@pytest.mark.claims("REST-DB-PG15")
def check_after_2(evidence):
    evidence.conclude(Verdict.passed("never reached"))

@pytest.mark.claims("REST-PASSWORDS-BCRYPT12")
def check_after_3(evidence):
    evidence.conclude(Verdict.passed("never reached"))
'''


@pytest.mark.parametrize("how", ["sigint", "raise"])
def test_an_interrupted_run_lists_the_interrupted_check_and_every_check_after_it(
        pytester: pytest.Pytester, how: str) -> None:
    # Given five checks, the second of which is interrupted 0.4 s in: by SIGINT to its own process
    # (a child pytest, as the command line runs it) or by KeyboardInterrupt raised in it
    if how == "sigint" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A shell starts a background job with SIGINT ignored, and the child pytest inherits that:
        # there no Ctrl-C can reach the run, so there is nothing to observe.
        pytest.skip("SIGINT is ignored in this process (started as a background job)")
    pytester.makepyfile(**{"area/interrupted": f"HOW = {how!r}\n" + CHECKS})
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    report = pytester.path / "report"
    argv = audit_argv(unreachable_target(pytester.path), report)
    if how == "sigint":
        pytester.runpytest_subprocess(*argv, timeout=120)
    else:
        pytester.runpytest_inprocess(*argv, no_reraise_ctrlc=True)
    # Then results.json lists all five: the first as judged, the interrupted one with how long it ran,
    # and each one after it as not run
    data = json.loads((report / "results.json").read_text())
    results = {r["check_id"]: (r["outcome"], r["message"]) for r in data["results"]}
    assert list(results) == ["area.first", "area.interrupted", "area.after_1", "area.after_2",
                             "area.after_3"], results
    assert results["area.first"] == ("PASS", "only TLS 1.3 accepted")
    outcome, message = results["area.interrupted"]
    ran = re.fullmatch(r"interrupted after (\d+\.\d) s", message)
    assert outcome == "ERROR" and ran is not None and 0.4 <= float(ran.group(1)) < 10, message
    for check in ("area.after_1", "area.after_2", "area.after_3"):
        assert results[check] == ("ERROR", "not run: interrupted"), (check, results[check])
    # And the four ERRORs keep the gate from passing
    assert [r["outcome"] for r in data["results"]].count("ERROR") == 4
    assert data["summary"]["gate"] == "error" and data["summary"]["exit_code"] == 2
    # And the JUnit file lists them too
    junit = (report / "junit.xml").read_text()
    assert junit.count("not run: interrupted") >= 3 and "interrupted after" in junit
