"""Each edge/rows violation, applied by hand to a RUNNING local stack, is caught by its check.

The shared clean stack is audited once per area (its expected checks PASS),
then for each violation: apply it through the backend (as calibrate does),
audit the area with the real CLI (``votriz-audit run --target``), expect its
checks to FAIL and no other check to FAIL that passed on the clean stack,
and restore the state as found (the edge configuration, the row's value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from audit_cli import CliRun, run_cli

from harness.calibrate import load_violation_expectations
from system_under_test.backends import BACKENDS
from system_under_test.violations import edge, rows
from system_under_test.violations.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPECTED = load_violation_expectations()
OURS = [violation.name for violation in (*edge.VIOLATIONS, *rows.VIOLATIONS)]
# What each violation's first check says, in part: the message names what it saw.
MESSAGE_HAS = {
    "edge-reload-tls12": "accepts TLSv1.2",
    "edge-reload-no-hsts": "sends no Strict-Transport-Security",
    "edge-reload-no-csp": "lacks content-security-policy",
    "row-token-plaintext": "channels.access_token_enc are not Fernet tokens",
    "row-bcrypt-cost-10": "1 at cost 10",
}
_clean_audits: dict[str, CliRun] = {}


def clean_audit(area: str, stack: Any, reports: Path) -> CliRun:
    """The clean stack's audit of ``area``, run once, before any violation touched the stack."""
    if area not in _clean_audits:
        _clean_audits[area] = run_cli(stack.profile_path, reports / f"clean-{area}", only=[area], limit_s=600)
    return _clean_audits[area]


class RestoreAsFound:
    """Keeps what a violation changes (edge configuration, the first channel and user rows)."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.edge_config = stack.edge_config.read_text(encoding="utf-8")
        self.channel = stack.sql("SELECT id, access_token_enc FROM channels ORDER BY id LIMIT 1")
        self.user = stack.sql("SELECT id, password_hash FROM users ORDER BY id LIMIT 1")

    def restore(self) -> None:
        if self.stack.edge_config.read_text(encoding="utf-8") != self.edge_config:
            self.stack.edit_edge_config(lambda _text: self.edge_config)
        for (row_id, value) in self.channel:
            self.stack.sql("UPDATE channels SET access_token_enc = %s WHERE id = %s", (value, row_id))
        for (row_id, value) in self.user:
            self.stack.sql("UPDATE users SET password_hash = %s WHERE id = %s", (value, row_id))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("violation-audits")


@pytest.mark.parametrize("name", OURS)
def test_the_violation_fails_its_checks_and_nothing_else(name: str, clean_stack: Any, reports: Path) -> None:
    expected = EXPECTED[name]
    areas = sorted({check.split(".")[0] for check in expected.checks})
    # Given the clean stack, on which the expected checks PASS
    clean = {area: clean_audit(area, clean_stack, reports) for area in areas}
    for check in expected.checks:
        assert clean[check.split(".")[0]].outcome(check) == "PASS", clean[check.split(".")[0]].results[check]
    stack = RunningStack.open(clean_stack.state_dir)
    as_found = RestoreAsFound(stack)
    try:
        # When the violation is applied to the running stack, as calibrate applies it
        BACKENDS["local"].apply_violation(clean_stack.state_dir, name)
        runs = {area: run_cli(clean_stack.profile_path, reports / f"{name}-{area}", only=[area], limit_s=600)
                for area in areas}
    finally:
        as_found.restore()
    # Then each expected check FAILs, saying what it saw
    for check in expected.checks:
        outcome, message = runs[check.split(".")[0]].results[check]
        assert outcome == "FAIL", (check, message)
        if check == expected.checks[0]:
            assert MESSAGE_HAS[name] in message, message
    # And no other check FAILs that passed on the clean stack (no false positive)
    for area, run in runs.items():
        others = [check for check, (outcome, _) in run.results.items()
                  if outcome == "FAIL" and check not in expected.checks
                  and clean[area].outcome(check) != "FAIL"]
        assert not others, others
