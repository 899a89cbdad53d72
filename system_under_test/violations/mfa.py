"""Violations of stored MFA backup codes and recovery tokens: rows of a user that is NOT the
audit's canary, changed by SQL as the superuser after the service wrote them.

Each makes its own user through the API, as a person would (sign-up, log-in,
MFA set-up, a code redeemed), so that the rows are the service's own; only
then is a row changed by hand. A check that follows only its canary cannot
see any of them; the API, meanwhile, honours them (a code marked unused again
is accepted again, a copied row twice).
"""

from __future__ import annotations

import secrets
import ssl
from typing import Any

from system_under_test.violations import Violation
from system_under_test.violations.stack import TIMEOUT_S, RunningStack, StackError

_PASSWORD_BYTES = 18


class _Account:
    """One fresh account on the stack's API, reached through the edge like any client."""

    def __init__(self, stack: RunningStack) -> None:
        import httpx

        edge = stack.profile["edge"]
        self._host = str(edge["host"])
        context = ssl.create_default_context(cafile=str(stack.ca_file))
        # Connect to the edge's address while the TLS name and Host header are the
        # public host's, so no DNS entry is needed.
        self._client = httpx.Client(
            base_url=f"https://{edge.get('address', '127.0.0.1')}:{edge['https_port']}"
                     f"{stack.profile.get('api', {}).get('base_path', '/api/v1')}",
            verify=context, timeout=TIMEOUT_S, headers={"host": self._host})
        self.email = f"mfa-violation-{secrets.token_hex(6)}@example.com"
        password = secrets.token_urlsafe(_PASSWORD_BYTES)
        self._token = ""
        try:
            self.user_id = int(self._call("POST", "/signup", 201,
                                          {"email": self.email, "password": password})["id"])
            self._token = str(self._call("POST", "/login", 200,
                                         {"email": self.email, "password": password})["token"])
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, path: str, status: int, body: object = None) -> Any:
        headers = {"authorization": f"Bearer {self._token}"} if self._token else {}
        answer = self._client.request(method, path, json=body, headers=headers,
                                      extensions={"sni_hostname": self._host})
        if answer.status_code != status:
            raise StackError(f"{method} {path}: HTTP {answer.status_code}, not {status}")
        return answer.json()

    def mfa_setup(self) -> list[str]:
        """Enable MFA; the ten backup codes the service hands out once."""
        return [str(code) for code in self._call("POST", "/mfa/setup", 201)["backup_codes"]]

    def redeem(self, code: str) -> None:
        self._call("POST", "/mfa/backup-codes/redeem", 200, {"code": code})

    def request_recovery(self) -> None:
        self._call("POST", "/recovery/request", 202, {"email": self.email})

    def close(self) -> None:
        self._client.close()


def _mfa_user(stack: RunningStack, *, redeem: bool) -> int:
    """A fresh account with MFA on (and one code redeemed, if asked); its user id."""
    account = _Account(stack)
    try:
        codes = account.mfa_setup()
        if redeem:
            account.redeem(codes[0])
        return account.user_id
    finally:
        account.close()


def _changed(rows: list[tuple[object, ...]], what: str) -> None:
    if not rows:
        raise StackError(f"no {what} row was changed")


def redeemed_code_unused(stack: RunningStack) -> None:
    """A user redeems a code through the API; its row is then marked unused again."""
    user_id = _mfa_user(stack, redeem=True)
    _changed(stack.sql("UPDATE mfa_backup_codes SET used_at = NULL WHERE user_id = %s "
                       "AND used_at IS NOT NULL RETURNING id", (user_id,)), "used code")


def code_row_duplicated(stack: RunningStack) -> None:
    """One of a user's unused code rows is copied, hash, state and issue time alike."""
    user_id = _mfa_user(stack, redeem=False)
    _changed(stack.sql("INSERT INTO mfa_backup_codes (user_id, code_hash, used_at, created_at) "
                       "SELECT user_id, code_hash, used_at, created_at FROM mfa_backup_codes "
                       "WHERE id = (SELECT min(id) FROM mfa_backup_codes WHERE user_id = %s) "
                       "RETURNING id", (user_id,)), "code")


def eleventh_code(stack: RunningStack) -> None:
    """A user's set of ten codes gets an eleventh row: a bcrypt hash of a code the service
    never issued."""
    import bcrypt

    user_id = _mfa_user(stack, redeem=False)
    code = secrets.token_hex(5)
    stored = bcrypt.hashpw(code.encode("ascii"), bcrypt.gensalt(rounds=12)).decode("ascii")
    _changed(stack.sql("INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES (%s, %s) "
                       "RETURNING id", (user_id, stored)), "code")


def recovery_token_long_lived(stack: RunningStack) -> None:
    """A user asks for a recovery mail; its token row is then made valid for 30 days."""
    account = _Account(stack)
    try:
        account.request_recovery()
    finally:
        account.close()
    _changed(stack.sql("UPDATE recovery_tokens SET expires_at = created_at + interval '30 days' "
                       "WHERE user_id = %s RETURNING id", (account.user_id,)), "recovery token")


VIOLATIONS = (
    Violation("mfa-code-unused-again", "a user's backup code is redeemed through the API, then "
              "its row is marked unused again by SQL (used_at = NULL)", redeemed_code_unused),
    Violation("mfa-code-row-duplicated", "one of a user's backup-code rows is copied by SQL "
              "(INSERT ... SELECT of the same hash, state and issue time)", code_row_duplicated),
    Violation("mfa-code-eleventh", "an eleventh backup-code row (a bcrypt hash of a code the "
              "service never issued) is inserted by SQL for a user with ten", eleventh_code),
    Violation("recovery-token-long-lived", "a user's fresh recovery-token row is made valid "
              "for 30 days by SQL (expires_at = created_at + 30 days)",
              recovery_token_long_lived),
)
