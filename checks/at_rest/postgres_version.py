"""at_rest.postgres_version: the database is PostgreSQL 15, as the page says."""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.database import DatabaseServer, database_server
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def postgres_version_verdict(server: DatabaseServer) -> Verdict:
    """The server's major version is 15, as the page says."""
    details = {"server_version_num": server.version_num, "server_version": server.version,
               "role": server.role, "database": server.database}
    if server.major == 15:
        return Verdict.passed(f"PostgreSQL {server.version} (server_version_num "
                              f"{server.version_num}): major version 15.", **details)
    return Verdict.failed(f"The database is PostgreSQL {server.version} (major {server.major}), "
                          "not PostgreSQL 15 as the page says.", **details)


@pytest.mark.claims("REST-DB-PG15")
@pytest.mark.access("database")
def check_postgres_version(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    if profile.database is None:
        evidence.manual("The profile names no database. By hand: run `SELECT version()` on the "
                        "service's database and attach the answer.")
    verdict = postgres_version_verdict(database_server(profile, policy, known_secrets))
    evidence.attach("postgres-version", verdict.details)
    evidence.conclude(verdict)
