"""A key written by hand into a RUNNING local stack's log is found although the same audit
then rotates it: the checks that only observe run before those that change the system.

The stack is this module's own: the violation stays in the log, which no other test
should find.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_cli import run_cli, running_stack

from harness.calibrate import load_violation_expectations
from system_under_test.backends import BACKENDS
from system_under_test.local.stack import StackInfo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with running_stack() as info:
        yield info


def test_a_jwt_secret_in_the_log_fails_the_key_search_before_the_audit_rotates_it(
        stack: StackInfo, tmp_path: Path) -> None:
    # Given the current JWT signing secret, hex (no key shape matches hex), in a line of the
    # API's log of the running stack
    BACKENDS["local"].apply_violation(stack.state_dir, "log-jwt-secret-hex")
    # When the keys area is audited: it rotates the JWT secret (keys.jwt_rotation) and
    # searches for every key (keys.no_key_elsewhere), whose id sorts after the rotation's
    run = run_cli(stack.profile_path, tmp_path / "report", only=["keys"], limit_s=600)
    # Then the search, run before any rotation, found the secret by the value it had as found
    outcome, message = run.results["keys.no_key_elsewhere"]
    assert outcome == "FAIL", message
    assert "votriz/jwt-signing (hex) in " in message and "api.log" in message, message
    # And the rotation still ran, after it, and worked
    assert run.outcome("keys.jwt_rotation") == "PASS", run.message("keys.jwt_rotation")
    # (the check calibration expects of this violation, and nothing else of the area)
    expected = load_violation_expectations()["log-jwt-secret-hex"].checks
    assert [c for c, (o, _) in run.results.items() if o == "FAIL"] == list(expected), run.results
