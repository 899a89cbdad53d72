"""MFA backup codes and recovery tokens: every stored row as found, then the canary's.

As found (before the audit acts, once a run, before the run's canary enrolls:
:func:`observe_mfa_rows_before_canary`, held by the at-rest area's session fixture
``mfa_rows_before_canary``): every ``mfa_backup_codes`` and
``recovery_tokens`` row of every user is judged in PostgreSQL by the
read-only auditor role, in one REPEATABLE READ snapshot, with the groups
of rows that break a rule sent back (ids only, at most :data:`EXAMPLES`
groups a rule, each with its totals), never a table in memory:

- each value is well-formed bcrypt at the policy's minimum cost or more;
- no hash string is stored twice, within a user or across users: bcrypt
  salts every hash, so two independent hashes of one code differ and an
  identical string is a copied row;
- no user has more code rows than the set the service issues, nor rows
  from more than one issue (``created_at``: the service inserts a set in one
  transaction, whose ``now()`` every row of it shares);
- no unused code row was rewritten after its issue (see :data:`_REWRITTEN`);
- no row was used before it was made; no recovery token lives longer than
  the policy allows.

The service's only writes (``system_under_test/api/accounts.py``):
``mfa_setup`` inserts a user's whole set in one transaction (the one that
sets ``users.mfa_enabled``, which is refused when already set, so one set per
user); ``redeem_backup_code`` only sets ``used_at`` of an unused row;
``recovery_request`` inserts one token row per request with ``expires_at =
now() + 15 min`` (so several live tokens per user are normal);
``recovery_confirm`` only sets ``used_at``; deleting an account cascades.

Then the canary flow: the codes the API handed out are looked for again in
its answers, matched to their stored rows (few bcrypt verifications) and
redeemed twice; a fresh recovery token is taken from the mail, looked for in
the API's answer and in its stored row, and confirmed twice.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from harness.canaries import CanarySession
from harness.details import counts, plain, plural
from harness.formats.bcrypt_hash import (
    BCRYPT_LENGTH,
    BCRYPT_SQL_PATTERN,
    CodeMatching,
    bcrypt_check,
    classify_stored_hash,
    match_codes_to_rows,
)
from harness.outcomes import ProbeError, Verdict
from harness.policy import Policy
from harness.probes.database import DatabaseProbe, open_database
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import secrets_in_text

#: How many groups of rows a rule names (by user and row ids, never by value).
EXAMPLES = 10
#: Row ids named in one group.
ROW_IDS_PER_GROUP = 20


@dataclass(frozen=True)
class RowGroup:
    """Rows that break one rule together: one user's rows, or the rows sharing one hash string.

    Attributes:
        users: the users the rows belong to, ascending.
        rows: the first :data:`ROW_IDS_PER_GROUP` row ids, ascending.
        row_count: how many rows the group holds.
        issues: how many distinct ``created_at`` the rows have.
    """

    users: tuple[int, ...]
    rows: tuple[int, ...]
    row_count: int
    issues: int = 1

    def named(self) -> str:
        """``user 7 (rows 70, 71)``: ids only."""
        who = (f"user {self.users[0]}" if len(self.users) == 1
               else "users " + ", ".join(map(str, self.users)))
        ids = ", ".join(map(str, self.rows))
        more = (f" and {self.row_count - len(self.rows)} more"
                if self.row_count > len(self.rows) else "")
        return f"{who} ({'row' if self.row_count == 1 else 'rows'} {ids}{more})"


@dataclass(frozen=True)
class RuleBreaches:
    """Every group of rows that breaks one rule, counted; the first few named.

    Attributes:
        groups: how many groups break the rule.
        rows: how many rows those groups hold.
        examples: the first :data:`EXAMPLES` groups, by user id.
    """

    groups: int = 0
    rows: int = 0
    examples: tuple[RowGroup, ...] = ()

    def named(self) -> str:
        """The named groups, and how many more there are."""
        text = "; ".join(group.named() for group in self.examples)
        if self.groups > len(self.examples):
            text += f"; and {self.groups - len(self.examples)} more"
        return text


@dataclass(frozen=True, kw_only=True)
class HashRowsAsFound:
    """Every row of a table of hashed one-time secrets, as found, judged by rule.

    Attributes:
        table: the table.
        unreadable: why the auditor role could not read it ("" when it could).
        users: users with at least one row.
        rows: rows in the table.
        unused: rows with no ``used_at``.
        costs: bcrypt cost → well-formed bcrypt rows.
        min_cost: the lowest bcrypt cost accepted (policy).
        weak_kinds: what the weak rows are (scheme, or ``bcrypt cost N``) → rows.
        weak: rows that are not well-formed bcrypt at ``min_cost`` or more.
        duplicates: rows storing one hash string more than once (a group per string).
        used_before_issue: rows whose ``used_at`` is before their ``created_at``.
    """

    table: str
    unreadable: str = ""
    users: int = 0
    rows: int = 0
    unused: int = 0
    costs: dict[int, int] = field(default_factory=dict)
    min_cost: int = 0
    weak_kinds: dict[str, int] = field(default_factory=dict)
    weak: RuleBreaches = RuleBreaches()
    duplicates: RuleBreaches = RuleBreaches()
    used_before_issue: RuleBreaches = RuleBreaches()

    def costs_named(self) -> str:
        """``cost 10: 2, cost 12: 30`` for the well-formed bcrypt rows, or ``none``."""
        return ", ".join(f"cost {c}: {n}" for c, n in sorted(self.costs.items())) or "none"

    def weak_or_copied(self, row: str) -> list[str]:
        """The weak rows and the hash strings stored twice, a sentence each naming them by ids;
        ``row`` is the auditor's word for one row (``code row``)."""
        problems = []
        if self.weak.rows:
            problems.append(f"{plural(self.weak.rows, row)} of {plural(self.weak.groups, 'user')} "
                            f"not bcrypt at cost {self.min_cost} or more ({counts(self.weak_kinds)}): "
                            f"{self.weak.named()}")
        if self.duplicates.groups:
            problems.append(f"{self.duplicates.rows} {row}s store a hash string another row stores "
                            "too (bcrypt salts every hash, so an identical string is a copied row): "
                            f"{self.duplicates.named()}")
        return problems

    def used_before_made(self, secret: str) -> list[str]:
        """The rows used before they were made, as a sentence naming them (``secret``: ``code row``)."""
        if not self.used_before_issue.groups:
            return []
        return [f"{plural(self.used_before_issue.rows, secret)} used before it was made "
                f"(used_at < created_at): {self.used_before_issue.named()}"]


@dataclass(frozen=True, kw_only=True)
class CodeRowsAsFound(HashRowsAsFound):
    """Every ``mfa_backup_codes`` row of every user, as found.

    Attributes:
        set_size: the codes the service issues a user at once (policy).
        oversized: users with more rows than ``set_size``, or rows from more than one issue.
        rewritten: unused rows rewritten after their issue (see :data:`_REWRITTEN`).
    """

    table: str = "mfa_backup_codes"
    set_size: int = 0
    oversized: RuleBreaches = RuleBreaches()
    rewritten: RuleBreaches = RuleBreaches()


@dataclass(frozen=True, kw_only=True)
class TokenRowsAsFound(HashRowsAsFound):
    """Every ``recovery_tokens`` row of every user, as found.

    Attributes:
        live: unused rows not yet expired.
        max_lifetime_s: the longest ``expires_at - created_at`` accepted (policy).
        long_lived: rows that live longer than ``max_lifetime_s``.
    """

    table: str = "recovery_tokens"
    live: int = 0
    max_lifetime_s: int = 0
    long_lived: RuleBreaches = RuleBreaches()


#: One user's rows that match ``{where}``, as a group (see :class:`RowGroup`).
_PER_USER = ("SELECT ARRAY[user_id] AS user_ids, array_agg(id ORDER BY id) AS row_ids,"
             " count(*) AS row_count, count(DISTINCT created_at) AS issues"
             " FROM {table} WHERE {where} GROUP BY user_id")
#: Not well-formed bcrypt at the minimum cost or more (NULL included). The cost is
#: read only where the pattern matched, so the cast always sees two digits.
_IS_BCRYPT = "length({hash}) = %(length)s AND {hash} ~ %(pattern)s"
_WEAK = ("CASE WHEN " + _IS_BCRYPT + " THEN substr({hash}, 5, 2)::int < %(min_cost)s"
         " ELSE true END")
_DUPLICATES = ("SELECT array_agg(DISTINCT user_id ORDER BY user_id) AS user_ids,"
               " array_agg(id ORDER BY id) AS row_ids, count(*) AS row_count,"
               " count(DISTINCT created_at) AS issues"
               " FROM {table} GROUP BY {hash} HAVING count(*) > 1")
_OVERSIZED = ("SELECT ARRAY[user_id] AS user_ids, array_agg(id ORDER BY id) AS row_ids,"
              " count(*) AS row_count, count(DISTINCT created_at) AS issues"
              " FROM {table} GROUP BY user_id"
              " HAVING count(*) > %(set_size)s OR count(DISTINCT created_at) > 1")
#: Unused code rows written by another transaction than their issue's.
#:
#: PostgreSQL stamps every row version with ``xmin``, the transaction that wrote
#: it. The service inserts a user's set in one transaction and afterwards only
#: sets ``used_at`` (a new row version, a later ``xmin``) on an unused row, so an
#: unused row is never rewritten: its ``xmin`` is its issue's. Transaction ids
#: only grow, so the issue's is the oldest ``xmin`` among the rows of one issue
#: (one user, one ``created_at``) while at least one row of it was never
#: rewritten; ``age(xmin)`` orders them across wrap-around, and freezing keeps
#: the original ``xmin`` (PostgreSQL 9.4 and later). A redeemed row set unused
#: again, or a row copied in with its issue's ``created_at``, is then an unused
#: row with a younger ``xmin``. Sound for the service as written: a table
#: rewrite (``VACUUM FULL``, ``CLUSTER``) keeps ``xmin``; a restore by ``COPY`` or
#: an ``ALTER TABLE`` rewrite gives every row the same one. What it cannot see:
#: every row of an issue rewritten by one transaction (e.g. all ten redeemed
#: codes set unused at once, which then looks like a fresh issue), and a restore
#: that inserted rows one transaction each (``pg_dump --inserts`` without
#: ``--single-transaction``), which it reports as rewritten.
_REWRITTEN = ("WITH r AS (SELECT id, user_id, created_at, used_at, xmin::text::bigint AS x,"
              " age(xmin) AS a FROM {table}),"
              " issue AS (SELECT user_id, created_at, (array_agg(x ORDER BY a DESC))[1] AS x"
              " FROM r GROUP BY user_id, created_at)"
              " SELECT ARRAY[r.user_id] AS user_ids, array_agg(r.id ORDER BY r.id) AS row_ids,"
              " count(*) AS row_count, count(DISTINCT r.created_at) AS issues"
              " FROM r JOIN issue USING (user_id, created_at)"
              " WHERE r.used_at IS NULL AND r.x <> issue.x GROUP BY r.user_id")


_Found = TypeVar("_Found", bound="HashRowsAsFound")


class _Snapshot:
    """Queries over one REPEATABLE READ read-only snapshot of the auditor's connection."""

    def __init__(self, db: DatabaseProbe, policy: Policy, table: str, hash_column: str) -> None:
        self._conn = db.connection
        self._limit_s = policy.timeouts.command_s
        self._names = {"table": sql.Identifier(table), "hash": sql.Identifier(hash_column)}
        self.table = table

    def compose(self, template: str, **extra: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(**self._names, **extra)

    def begin(self) -> None:
        # The connection may hold the open() queries' transaction: start afresh, so
        # that every query of this table sees one snapshot.
        self._conn.rollback()
        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        self._conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
            sql.Literal(int(self._limit_s * 1000))))

    def end(self) -> None:
        self._conn.rollback()

    def one(self, template: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
        row = self._conn.execute(self.compose(template), params or {}).fetchone()
        assert row is not None  # an aggregate without GROUP BY always has a row
        return tuple(row)

    def all(self, template: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(self.compose(template), params or {})]

    def breaches(self, grouped: str, params: dict[str, Any] | None = None,
                 **extra: sql.Composable) -> RuleBreaches:
        """Count the groups of ``grouped`` and name the first :data:`EXAMPLES`."""
        query = sql.SQL(
            "SELECT user_ids, row_ids[1:{ids}], row_count, issues, count(*) OVER (),"
            " sum(row_count) OVER () FROM ({grouped}) AS g"
            " ORDER BY user_ids[1], row_ids[1] LIMIT {limit}").format(
            ids=sql.Literal(ROW_IDS_PER_GROUP), grouped=self.compose(grouped, **extra),
            limit=sql.Literal(EXAMPLES))
        found = self._conn.execute(query, params or {}).fetchall()
        if not found:
            return RuleBreaches()
        return RuleBreaches(int(found[0][4]), int(found[0][5]), tuple(
            RowGroup(tuple(map(int, users)), tuple(map(int, rows)), int(count), int(issues))
            for users, rows, count, issues, _, _ in found))

    def weak_kinds(self, params: dict[str, Any]) -> dict[str, int]:
        """What each weak row is, streamed and classified here (values never kept)."""
        kinds: Counter[str] = Counter()
        query = self.compose("SELECT {hash} FROM {table} WHERE " + _WEAK)
        with self._conn.cursor() as cursor:
            for (value,) in cursor.stream(query, params):
                kind = classify_stored_hash(value)
                kinds[kind.scheme.value if kind.cost is None else f"bcrypt cost {kind.cost}"] += 1
        return dict(kinds)


def _judge_as_found(db: DatabaseProbe, policy: Policy, table: str, hash_column: str,
                    judge: Callable[[_Snapshot], _Found]) -> _Found | str:
    """``judge(snapshot)`` in one snapshot of ``table``, or why the auditor role cannot
    read it; any other failure is a ProbeError that names the table, never a value."""
    snapshot = _Snapshot(db, policy, table, hash_column)
    try:
        snapshot.begin()
        return judge(snapshot)
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable,
            psycopg.errors.UndefinedColumn) as exc:
        return f"the auditor role cannot read {table}: {_first_line(exc)}"
    except psycopg.errors.QueryCanceled:
        raise ProbeError(f"judging every {table} row exceeded "
                         f"{policy.timeouts.command_s:g} s") from None
    except psycopg.Error as exc:
        raise ProbeError(f"cannot judge the {table} rows: {_first_line(exc)}") from None
    finally:
        with contextlib.suppress(psycopg.Error):
            snapshot.end()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _common(snapshot: _Snapshot, min_cost: int) -> dict[str, Any]:
    """The rules both tables share, as keyword arguments of :class:`HashRowsAsFound`."""
    params = {"pattern": BCRYPT_SQL_PATTERN, "length": BCRYPT_LENGTH, "min_cost": min_cost}
    costs = {int(cost): int(n) for cost, n in snapshot.all(
        "SELECT substr({hash}, 5, 2)::int, count(*) FROM {table} WHERE " + _IS_BCRYPT
        + " GROUP BY 1", params)}
    weak = snapshot.breaches(_PER_USER, params, where=snapshot.compose(_WEAK))
    return {
        "costs": costs, "min_cost": min_cost, "weak": weak,
        "weak_kinds": snapshot.weak_kinds(params) if weak.rows else {},
        "duplicates": snapshot.breaches(_DUPLICATES),
        "used_before_issue": snapshot.breaches(_PER_USER,
                                               where=sql.SQL("used_at < created_at")),
    }


def observe_codes_as_found(db: DatabaseProbe, policy: Policy) -> CodeRowsAsFound:
    """Judge every ``mfa_backup_codes`` row of every user (see the module's docstring)."""
    mfa = policy.mfa

    def judge(snapshot: _Snapshot) -> CodeRowsAsFound:
        users, rows, unused = snapshot.one(
            "SELECT count(DISTINCT user_id), count(*), count(*) FILTER (WHERE used_at IS NULL)"
            " FROM {table}")
        return CodeRowsAsFound(
            users=int(users), rows=int(rows), unused=int(unused),
            **_common(snapshot, mfa.min_bcrypt_cost), set_size=mfa.backup_code_set_size,
            oversized=snapshot.breaches(_OVERSIZED, {"set_size": mfa.backup_code_set_size}),
            rewritten=snapshot.breaches(_REWRITTEN))

    found = _judge_as_found(db, policy, "mfa_backup_codes", "code_hash", judge)
    if isinstance(found, str):
        return CodeRowsAsFound(unreadable=found, min_cost=mfa.min_bcrypt_cost,
                               set_size=mfa.backup_code_set_size)
    return found


def observe_tokens_as_found(db: DatabaseProbe, policy: Policy) -> TokenRowsAsFound:
    """Judge every ``recovery_tokens`` row of every user (see the module's docstring)."""
    mfa = policy.mfa

    def judge(snapshot: _Snapshot) -> TokenRowsAsFound:
        users, rows, unused, live = snapshot.one(
            "SELECT count(DISTINCT user_id), count(*), count(*) FILTER (WHERE used_at IS NULL),"
            " count(*) FILTER (WHERE used_at IS NULL AND expires_at > now()) FROM {table}")
        return TokenRowsAsFound(
            users=int(users), rows=int(rows), unused=int(unused), live=int(live),
            **_common(snapshot, mfa.min_bcrypt_cost),
            max_lifetime_s=mfa.recovery_token_max_lifetime_s,
            long_lived=snapshot.breaches(
                _PER_USER, {"lifetime": mfa.recovery_token_max_lifetime_s},
                where=sql.SQL("expires_at - created_at > make_interval(secs => %(lifetime)s)")))

    found = _judge_as_found(db, policy, "recovery_tokens", "token_hash", judge)
    if isinstance(found, str):
        return TokenRowsAsFound(unreadable=found, min_cost=mfa.min_bcrypt_cost,
                                max_lifetime_s=mfa.recovery_token_max_lifetime_s)
    return found


@dataclass(frozen=True)
class MfaRowsBeforeCanary:
    """Every user's code and recovery-token rows, judged once before the run's canary enrolled,
    so that "as found" counts only what the service held (never the canary's own rows).

    Attributes:
        codes: the ``mfa_backup_codes`` rows as found; None when they could not be read.
        tokens: the ``recovery_tokens`` rows as found; None when they could not be read.
        error: why they could not be read (one line), else ``""``.
    """

    codes: CodeRowsAsFound | None = None
    tokens: TokenRowsAsFound | None = None
    error: str = ""

    def codes_or_raise(self) -> CodeRowsAsFound:
        """The code rows as found.

        Raises:
            ProbeError: they could not be read before the canary enrolled.
        """
        return self._read(self.codes, "code rows")

    def tokens_or_raise(self) -> TokenRowsAsFound:
        """The recovery-token rows as found.

        Raises:
            ProbeError: they could not be read before the canary enrolled.
        """
        return self._read(self.tokens, "recovery-token rows")

    def _read(self, rows: _Found | None, what: str) -> _Found:
        if rows is None:
            raise ProbeError(f"the {what} could not be read before the canary enrolled: {self.error}")
        return rows


def observe_mfa_rows_before_canary(profile: TargetProfile, policy: Policy,
                                   known: KnownSecrets) -> MfaRowsBeforeCanary:
    """Judge every user's code and recovery-token rows on one connection; never raises (a
    failure is kept as ``error`` for the checks that need the rows to report)."""
    if profile.database is None:
        return MfaRowsBeforeCanary(error="the profile names no database")
    try:
        with open_database(profile, policy, known) as db:
            return MfaRowsBeforeCanary(observe_codes_as_found(db, policy),
                                       observe_tokens_as_found(db, policy))
    except ProbeError as exc:
        return MfaRowsBeforeCanary(error=str(exc))


def without_canary_verdict(found: HashRowsAsFound, problems: list[str], sentence: str, reason: str,
                           *, broken: str, rows: str, secret: str, follow: str, by_hand: str) -> Verdict:
    """Every user's stored rows as found, when no canary can follow a secret: FAIL on the
    ``problems`` they show, ERROR when they could not be read, else MANUAL for what only a
    canary (or a person) can see.

    Args:
        found: the rows as found.
        problems: what they show against the promise.
        sentence: what they show when there is no problem.
        reason: why no canary can follow a secret.
        broken: what breaks the promise (``MFA backup codes``).
        rows: the rows (``code rows``).
        secret: one secret (``code``).
        follow: what only a canary can see (``That codes are shown once and work once``).
        by_hand: how a person sees it.
    """
    details: dict[str, Any] = plain(found)
    if problems:
        return Verdict.failed(f"{broken} break the promise: " + "; ".join(problems) + ".", **details)
    if found.unreadable:
        return Verdict.error(f"The stored {rows} could not be judged as found ({found.unreadable}), "
                             f"and no canary can follow a {secret}: {reason}.", **details)
    return Verdict.manual(f"{sentence} {follow} can only be followed with a canary account, and "
                          f"{reason}. " + by_hand, **details)


@dataclass(frozen=True)
class BackupCodesObservation:
    """Everything at_rest.backup_codes judges.

    Attributes:
        codes_returned: how many codes ``POST /mfa/setup`` answered.
        shown_again: codes found again in the ``GET /mfa`` answer.
        rows: the canary's ``mfa_backup_codes`` rows.
        row_schemes: scheme → rows.
        matching: which row each code verifies against.
        redeem_first: status of the first redeem of one code.
        redeem_second: status of redeeming the same code again.
        as_found: every user's code rows, judged before the run's canary enrolled.
    """

    codes_returned: int
    shown_again: tuple[str, ...]
    rows: int
    row_schemes: dict[str, int]
    matching: CodeMatching
    redeem_first: int
    redeem_second: int
    as_found: CodeRowsAsFound


def _rows_of(profile: TargetProfile, policy: Policy, known: KnownSecrets, table: str, column: str,
             user_id: int | None, *, after: int | None = None) -> list[tuple[Any, Any]]:
    """One user's ``(id, value)`` rows of ``table.column`` (only those after row id ``after``,
    if given), read on a connection of their own."""
    where, params = (("user_id = %s", (user_id,)) if after is None
                     else ("user_id = %s AND id > %s", (user_id, after)))
    with open_database(profile, policy, known) as db:
        return [row for batch in db.stream_column(table, column, where=where, params=params)
                for row in batch]


def observe_backup_codes(session: CanarySession, profile: TargetProfile, policy: Policy,
                         known: KnownSecrets, as_found: CodeRowsAsFound) -> BackupCodesObservation:
    """Look for the canary's codes in ``GET /mfa``, match them to their rows, and redeem one
    twice; ``as_found`` is every user's code rows, judged before the canary enrolled."""
    canary = session.canary
    codes = list(canary.backup_codes)
    session.ensure_session()
    status_text = str(session.api.mfa_status().body) + " " + str(canary.mfa_status_body)
    shown = secrets_in_text(status_text, codes, "code") if codes else ()
    rows = _rows_of(profile, policy, known, "mfa_backup_codes", "code_hash", canary.user_id)
    schemes = Counter(classify_stored_hash(v).scheme.value for _, v in rows)
    matching = match_codes_to_rows(codes, rows, workers=os.cpu_count() or 2)
    first = second = 0
    if codes:
        first = session.api.redeem_backup_code(codes[-1]).status
        second = session.api.redeem_backup_code(codes[-1]).status
    return BackupCodesObservation(len(codes), shown, len(rows), dict(schemes), matching,
                                  first, second, as_found)


@dataclass(frozen=True)
class RecoveryObservation:
    """Everything at_rest.recovery_tokens judges.

    Attributes:
        mail_received: a recovery mail with a token reached the canary's inbox.
        in_request_answer: the token appeared in the API's answer to the request.
        row_found: the canary has a recovery_tokens row made for this request.
        row_scheme: what that row's stored value is.
        row_match: the mailed token checked against the row (one bcrypt verification).
        row_is_token: the row holds the token itself.
        confirm_first: status of the first confirm with the token.
        confirm_second: status of confirming again with the same token.
        as_found: every user's token rows, judged before the run's canary enrolled.
    """

    mail_received: bool
    in_request_answer: bool
    row_found: bool
    row_scheme: str
    row_match: str
    row_is_token: bool
    confirm_first: int
    confirm_second: int
    as_found: TokenRowsAsFound


def observe_recovery(session: CanarySession, profile: TargetProfile, policy: Policy,
                     known: KnownSecrets, as_found: TokenRowsAsFound) -> RecoveryObservation:
    """Request a fresh recovery token, find it in the answer and its row, and confirm it
    twice; ``as_found`` is every user's token rows, judged before the canary enrolled."""
    canary = session.canary
    before = max((k for k, _ in _rows_of(profile, policy, known, "recovery_tokens", "token_hash",
                                          canary.user_id)), default=0)
    # A fresh token: one from the start of the run may have expired by now.
    mail = session.fresh_recovery()
    token = mail.token
    if token is None:
        return RecoveryObservation(False, False, False, "", "", False, 0, 0, as_found)
    in_answer = bool(secrets_in_text(str(canary.recovery_request_body), [token], "token"))
    rows = _rows_of(profile, policy, known, "recovery_tokens", "token_hash", canary.user_id,
                    after=before)
    stored = max(rows, key=lambda r: r[0])[1] if rows else None
    scheme = classify_stored_hash(stored).scheme.value if rows else ""
    is_token = isinstance(stored, str) and hmac.compare_digest(stored.encode(), token.encode())
    match = bcrypt_check(token, stored).value if rows else ""
    first = session.api.confirm_recovery(canary.email, token)
    second = session.api.confirm_recovery(canary.email, token)
    for answer in (first, second):
        if isinstance(answer.body, dict) and isinstance(answer.body.get("token"), str):
            known.add(answer.body["token"], "canary session token (recovery)")
    return RecoveryObservation(True, in_answer, bool(rows), scheme, match, is_token,
                               first.status, second.status, as_found)
