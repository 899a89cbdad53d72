"""at_rest.postgres_version on hand-made observations: both sides."""

from __future__ import annotations

from checks.at_rest.postgres_version import postgres_version_verdict
from harness.outcomes import Outcome
from harness.probes.database import DatabaseServer


def test_postgres_version_both_sides() -> None:
    ok = postgres_version_verdict(DatabaseServer(150020, "15.20", "a", "votriz", False))
    assert ok.outcome is Outcome.PASS and "major version 15" in ok.message
    bad = postgres_version_verdict(DatabaseServer(160004, "16.4", "a", "votriz", False))
    assert bad.outcome is Outcome.FAIL
    assert "PostgreSQL 16.4 (major 16), not PostgreSQL 15" in bad.message
