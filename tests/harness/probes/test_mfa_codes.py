"""The as-found probe of MFA codes and recovery tokens against the real PostgreSQL of a stack:
its SQL bcrypt pattern agrees with the Python parser, a table the auditor cannot read is
``unreadable`` (then ERROR), and nothing but ids leave the database in a finding."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.formats.bcrypt_hash import (
    BCRYPT_LENGTH,
    BCRYPT_SQL_PATTERN,
    HashScheme,
    classify_stored_hash,
)
from harness.policy import load_policy
from harness.probes.database import open_database
from harness.probes.mfa_codes import RowGroup, RuleBreaches, observe_codes_as_found
from harness.profile import load_profile
from harness.redaction import KnownSecrets

pytestmark = pytest.mark.integration

POLICY = load_policy()
SALTED = "$2b$12$" + "a" * 22 + "b" * 31
VECTORS = [SALTED, SALTED.replace("$2b$", "$2a$"), SALTED.replace("$2b$", "$2y$"),
           SALTED.replace("$2b$", "$2x$"), SALTED + "\n", "\n" + SALTED, SALTED[:-1],
           SALTED.replace("a", "+", 1), SALTED.replace("$12$", "$1$"),
           SALTED.replace("12", "١٢", 1), "$2b$99$" + "a" * 53, "abcde-fghjk", "", "$argon2id$x"]


def _auditor(info) -> psycopg.Connection:  # type: ignore[no-untyped-def]
    profile = load_profile(info.profile_path)
    assert profile.database is not None and profile.database.password is not None
    return psycopg.connect(profile.database.dsn,
                           password=profile.database.password.read("auditor"))


def _sql_says_bcrypt(conn: psycopg.Connection, values: list[str]) -> list[bool]:
    rows = conn.execute("SELECT length(v) = %s AND v ~ %s FROM unnest(%s::text[])"
                        " WITH ORDINALITY AS t(v, n) ORDER BY n",
                        (BCRYPT_LENGTH, BCRYPT_SQL_PATTERN, values)).fetchall()
    return [bool(r[0]) for r in rows]


def _python_says_bcrypt(value: str) -> bool:
    # The pattern does not judge the cost's range (the SQL compares it with the policy's).
    # It takes ASCII digits only, where the parser's ``\d`` also takes other scripts'
    # (``$2b$١٢$``, which bcrypt itself refuses): the SQL is the stricter of the two.
    kind = classify_stored_hash(value)
    return value.isascii() and (kind.scheme is HashScheme.BCRYPT or (
        kind.scheme is HashScheme.MALFORMED_BCRYPT and "outside 4..31" in kind.detail))


def test_sql_pattern_agrees_with_the_parser_on_vectors(clean_stack) -> None:  # type: ignore[no-untyped-def]
    with _auditor(clean_stack) as conn:
        assert _sql_says_bcrypt(conn, VECTORS) == [_python_says_bcrypt(v) for v in VECTORS]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.text(alphabet="$2aby0123456789./ABCxyz", min_size=50, max_size=62),
    st.builds(lambda v, c, s: f"${v}${c}${s}", st.sampled_from(["2a", "2b", "2y", "2x"]),
              st.sampled_from(["04", "10", "12", "31", "1", "123"]),
              st.text(alphabet="./ABCabc0189\n", min_size=52, max_size=54))),
    min_size=1, max_size=50))
def test_sql_pattern_agrees_with_the_parser_on_generated_text(clean_stack, values: list[str]) -> None:  # type: ignore[no-untyped-def]
    values = [v.replace("\x00", "") for v in values]
    with _auditor(clean_stack) as conn:
        assert _sql_says_bcrypt(conn, values) == [_python_says_bcrypt(v) for v in values]


def test_a_table_the_auditor_cannot_read_is_unreadable(clean_stack) -> None:  # type: ignore[no-untyped-def]
    superuser = (f"host={clean_stack.state_dir / 'run'} port={clean_stack.ports.postgres} "
                 "dbname=votriz user=postgres")
    profile = load_profile(clean_stack.profile_path)
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("REVOKE SELECT ON mfa_backup_codes FROM votriz_auditor")
        try:
            with open_database(profile, POLICY, KnownSecrets()) as db:
                found = observe_codes_as_found(db, POLICY)
        finally:
            conn.execute("GRANT SELECT ON mfa_backup_codes TO votriz_auditor")
    assert found.unreadable.startswith("the auditor role cannot read mfa_backup_codes: "
                                       "permission denied")
    assert found.rows == 0 and found.set_size == 10


def test_findings_name_ids_only() -> None:
    breaches = RuleBreaches(3, 4, (RowGroup((1,), (10,), 1), RowGroup((2, 3), (20, 30, 31), 3)))
    assert breaches.named() == "user 1 (row 10); users 2, 3 (rows 20, 30, 31); and 1 more"


def test_rows_before_canary_keep_why_they_could_not_be_read() -> None:
    from types import SimpleNamespace

    import pytest

    from harness.outcomes import ProbeError
    from harness.policy import load_policy
    from harness.probes.mfa_codes import observe_mfa_rows_before_canary
    from harness.redaction import KnownSecrets

    found = observe_mfa_rows_before_canary(SimpleNamespace(database=None),  # type: ignore[arg-type]
                                           load_policy(), KnownSecrets())
    assert found.codes is None and found.error == "the profile names no database"
    with pytest.raises(ProbeError, match="code rows could not be read before the canary "
                                         "enrolled: the profile names no database"):
        found.codes_or_raise()
    with pytest.raises(ProbeError, match="recovery-token rows could not be read"):
        found.tokens_or_raise()


def test_the_canary_fixture_waits_for_the_rows_as_found() -> None:
    import inspect

    from checks.at_rest import conftest

    # The canary enrolls only after every user's rows were judged as found.
    assert "mfa_rows_before_canary" in inspect.signature(
        conftest.at_rest_canary.__wrapped__).parameters  # type: ignore[attr-defined]
