"""The reference API on a real local stack, observed from outside: answers, rows, mails, logs.

Each API fault is observed on one shared stack that has all of them on (they touch
different rows and endpoints), and its absence on the clean stack.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import psycopg
import psycopg.sql
import pyotp
import pytest
from audit_cli import running_stack
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from system_under_test.api.config import load_config
from system_under_test.api.keyring import (
    DB_PASSWORD_LABEL,
    EMAIL_INDEX_LABEL,
    JWT_LABEL,
    fernet_key,
    token_key_versions,
)
from system_under_test.common import softhsm
from system_under_test.common.softhsm import HsmToken

pytestmark = pytest.mark.integration

API_FAULTS = ("token-plaintext", "token-fixed-iv", "bcrypt-cost-10", "backup-codes-reusable",
              "backup-codes-shown-again", "recovery-token-plaintext", "recovery-token-reusable",
              "secrets-in-logs", "email-plaintext", "llm-plaintext", "resend-plaintext")
PASSWORD = "correct horse battery"


# --- ways to look at a stack from outside -------------------------------------------------


def api(info) -> httpx.Client:
    """A client on the API's own unix socket (the edge is tested elsewhere)."""
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(info.api_socket)),
                        base_url="http://votriz.test", timeout=60)


def hsm_token(info) -> HsmToken:
    return HsmToken.of_stack(info.state_dir)


def hsm_values(info) -> dict[str, bytes]:
    """Every key on the stack's token, read in a child process (SoftHSM's config is per process)."""
    labels = [str(o["label"]) for o in softhsm.inspect_objects(hsm_token(info))]
    return softhsm.read_values(hsm_token(info), labels)


def token_ring(values: dict[str, bytes]) -> MultiFernet:
    versions = token_key_versions(values)
    return MultiFernet([Fernet(fernet_key(values[versions[v]])) for v in sorted(versions,
                                                                                reverse=True)])


def db(info) -> psycopg.Connection:
    """A connection as votriz_app (password from the HSM), for reading and ageing rows."""
    password = hsm_values(info)[DB_PASSWORD_LABEL].decode()
    return psycopg.connect(load_config(info.api_config).database_dsn, password=password,
                           autocommit=True)


def user_column(info, user_id: int, column: str) -> object:
    """One column of one user's row, as stored."""
    with db(info) as conn:
        query = psycopg.sql.SQL("SELECT {} FROM users WHERE id = %s").format(psycopg.sql.Identifier(column))
        return conn.execute(query, (user_id,)).fetchone()[0]


def mails_to(info, address: str) -> list[dict[str, object]]:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(info.ca_file)), timeout=10) as client:
        return client.get(f"{info.capture_url}/_capture/mail", params={"to": address}).json()[
            "mails"]


def captured_requests(info, since: int = 0) -> list[dict[str, object]]:
    """The fakes' captured requests after sequence number ``since`` (the shared clean stack keeps
    every request other tests made, some of them on purpose over plaintext)."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(info.ca_file)), timeout=10) as client:
        return client.get(f"{info.capture_url}/_capture/requests",
                          params={"since": since}).json()["requests"]


def last_captured(info) -> int:
    """The sequence number of the newest captured request (0 when none)."""
    return max((int(r["seq"]) for r in captured_requests(info)), default=0)


def new_user(client: httpx.Client) -> tuple[str, dict[str, str], int]:
    """Sign up a fresh user; return its e-mail, bearer header and id."""
    email = f"canary-{secrets.token_hex(6)}@example.com"
    created = client.post("/api/v1/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token = client.post("/api/v1/login", json={"email": email, "password": PASSWORD}).json()[
        "token"]
    return email, {"authorization": f"Bearer {token}"}, created.json()["id"]


def new_channel(client: httpx.Client, headers: dict[str, str], platform: str
                ) -> tuple[int, int, str]:
    brand = client.post("/api/v1/brands", json={"name": "Canary", "industry": "tests"},
                        headers=headers).json()["id"]
    access = f"at-{secrets.token_hex(12)}"
    created = client.post(f"/api/v1/brands/{brand}/channels", headers=headers, json={
        "platform": platform, "access_token": access, "refresh_token": f"rt-{secrets.token_hex(12)}"})
    assert created.status_code == 201, created.text
    return brand, created.json()["id"], access


def recovery_link(info, client: httpx.Client, email: str) -> dict[str, str]:
    before = len(mails_to(info, email))
    assert client.post("/api/v1/recovery/request", json={"email": email}).status_code == 202
    mails = mails_to(info, email)
    assert len(mails) == before + 1
    link = next(line for line in str(mails[-1]["text"]).splitlines() if "/recover?" in line)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(link.strip()).query))


@pytest.fixture(scope="module")
def faulty_stack() -> Iterator[object]:
    """One stack with every API fault on, for this module (stack_factory is per test)."""
    with running_stack(API_FAULTS) as info:
        yield info


# --- clean stack: every promise kept ------------------------------------------------------


BAD_INPUTS = [
    ("POST", "/api/v1/signup", {"email": "a@ex.com", "password": "x" * 73}, 400),
    ("POST", "/api/v1/signup", {"email": "a@ex.com", "password": "short"}, 400),
    ("POST", "/api/v1/signup", {"email": 7, "password": PASSWORD}, 400),
    ("POST", "/api/v1/login", {"email": "a@ex.com"}, 400),
    ("POST", "/api/v1/login", {"email": "a@ex.com", "password": "ü" * 40}, 400),
    ("POST", "/api/v1/brands", {"name": "", "industry": "x"}, 400),
    ("POST", "/api/v1/brands", {"name": "x" * 201, "industry": "x"}, 400),
    ("POST", "/api/v1/brands", {"name": ["x"], "industry": "x"}, 400),
    ("POST", "/api/v1/brands/{brand}/channels", {"platform": "myspace", "access_token": "a",
                                                 "refresh_token": "r"}, 400),
    ("POST", "/api/v1/brands/{brand}/channels", {"platform": "tiktok", "access_token": "",
                                                 "refresh_token": "r"}, 400),
    ("POST", "/api/v1/brands/{brand}/channels", {"platform": "tiktok", "access_token": "a" * 5000,
                                                 "refresh_token": "r"}, 400),
    ("POST", "/api/v1/brands/99999999999999999999/channels", {"platform": "tiktok",
                                                             "access_token": "a",
                                                             "refresh_token": "r"}, 404),
    ("POST", "/api/v1/brands/-1/channels", {"platform": "tiktok", "access_token": "a",
                                            "refresh_token": "r"}, 404),
    ("POST", "/api/v1/brands/1e9/captions", {"prompt": "p"}, 404),
    ("POST", "/api/v1/brands/{brand}/captions", {"prompt": 3}, 400),
    ("POST", "/api/v1/brands/{brand}/captions", {"prompt": "p" * 4001}, 400),
    ("GET", "/api/v1/brands/9223372036854775807/analytics", None, 404),
    ("PUT", "/api/v1/channels/{channel}/tokens", {"access_token": None, "refresh_token": "r"}, 400),
    ("PUT", "/api/v1/channels/0/tokens", {"access_token": "a", "refresh_token": "r"}, 404),
    ("POST", "/api/v1/channels/abc/sync", None, 404),
    ("POST", "/api/v1/mfa/backup-codes/redeem", {"code": ""}, 400),
    ("POST", "/api/v1/mfa/backup-codes/redeem", {"code": {"a": 1}}, 400),
    ("POST", "/api/v1/recovery/confirm", {"email": "a@ex.com", "token": "nope"}, 400),
    ("POST", "/api/v1/recovery/request", {"email": "not-an-address"}, 400),
]


@pytest.fixture(scope="module")
def owner(clean_stack) -> tuple[dict[str, str], int, int]:
    with api(clean_stack) as client:
        _, headers, _ = new_user(client)
        brand, channel, _ = new_channel(client, headers, "youtube")
    return headers, brand, channel


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_INPUTS)
def test_bad_input_is_a_4xx_json_error(clean_stack, owner, method, path, body, status):
    headers, brand, channel = owner
    with api(clean_stack) as client:
        response = client.request(method, path.format(brand=brand, channel=channel),
                                  json=body, headers=headers)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_other_users_rows_are_404(clean_stack, owner):
    _, brand, channel = owner
    with api(clean_stack) as client:
        _, stranger, _ = new_user(client)
        assert client.get(f"/api/v1/brands/{brand}/channels", headers=stranger).status_code == 404
        assert client.post(f"/api/v1/channels/{channel}/sync", headers=stranger).status_code == 404


def test_signup_stores_only_ciphertext_and_bcrypt_12(clean_stack):
    with api(clean_stack) as client:
        email, _, user_id = new_user(client)
    values = hsm_values(clean_stack)
    with db(clean_stack) as conn:
        email_enc, index, password_hash = conn.execute(
            "SELECT email_enc, email_index, password_hash FROM users WHERE id = %s",
            (user_id,)).fetchone()
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")}
    assert token_ring(values).decrypt(email_enc.encode()).decode() == email
    assert index == __import__("hmac").new(values[EMAIL_INDEX_LABEL], email.encode(),
                                           hashlib.sha256).hexdigest()
    assert password_hash.startswith("$2b$12$") and len(password_hash) == 60
    assert "contact_email" not in columns


def test_channel_tokens_are_fernet_per_row_and_sync_decrypts(clean_stack):
    with api(clean_stack) as client:
        _, headers, _ = new_user(client)
        brand, channel, access = new_channel(client, headers, "tiktok")
        listed = client.get(f"/api/v1/brands/{brand}/channels", headers=headers).json()
        synced = client.post(f"/api/v1/channels/{channel}/sync", headers=headers)
    assert "access_token" not in str(listed) and access not in str(listed)
    # The fake platform names the account after the token it was given.
    assert synced.json() == {"platform": "tiktok",
                             "account": f"tiktok-user-{hashlib.sha256(access.encode()).hexdigest()[:8]}"}
    with db(clean_stack) as conn:
        access_enc, refresh_enc = conn.execute(
            "SELECT access_token_enc, refresh_token_enc FROM channels WHERE id = %s",
            (channel,)).fetchone()
    ring = token_ring(hsm_values(clean_stack))
    assert ring.decrypt(access_enc.encode()).decode() == access
    ivs = {base64.urlsafe_b64decode(t)[9:25] for t in (access_enc, refresh_enc)}
    assert len(ivs) == 2


def test_captions_call_the_llm_over_https_and_store_ciphertext(clean_stack, owner):
    headers, brand, _ = owner
    before = last_captured(clean_stack)
    with api(clean_stack) as client:
        response = client.post(f"/api/v1/brands/{brand}/captions", headers=headers,
                               json={"prompt": "canary prompt for captions"})
    assert response.status_code == 201
    with db(clean_stack) as conn:
        prompt_enc = conn.execute("SELECT prompt_enc FROM captions WHERE id = %s",
                                  (response.json()["id"],)).fetchone()[0]
    assert token_ring(hsm_values(clean_stack)).decrypt(prompt_enc.encode()) == \
        b"canary prompt for captions"
    llm = [r for r in captured_requests(clean_stack, before) if r["path"] == "/anthropic/v1/messages"]
    assert llm and all(r["listener"] == "tls" for r in llm)
    assert all("x-api-key" in r["headers_present"] for r in llm)


def test_backup_codes_are_shown_once_and_work_once(clean_stack):
    with api(clean_stack) as client:
        _, headers, user_id = new_user(client)
        setup = client.post("/api/v1/mfa/setup", headers=headers)
        assert setup.status_code == 201
        codes = setup.json()["backup_codes"]
        assert client.post("/api/v1/mfa/setup", headers=headers).status_code == 409
        status = client.get("/api/v1/mfa", headers=headers).json()
        assert status == {"enabled": True, "backup_codes_remaining": 10}
        first = client.post("/api/v1/mfa/backup-codes/redeem", headers=headers,
                            json={"code": codes[0]})
        again = client.post("/api/v1/mfa/backup-codes/redeem", headers=headers,
                            json={"code": codes[0]})
    assert len(set(codes)) == 10
    assert first.status_code == 200 and first.json()["backup_codes_remaining"] == 9
    assert again.status_code == 401
    with db(clean_stack) as conn:
        hashes = [r[0] for r in conn.execute(
            "SELECT code_hash FROM mfa_backup_codes WHERE user_id = %s", (user_id,))]
    assert len(hashes) == 10 and all(h.startswith("$2b$12$") for h in hashes)
    assert not any(code in h for code in codes for h in hashes)


def test_login_needs_totp_once_mfa_is_on(clean_stack):
    with api(clean_stack) as client:
        email, headers, _ = new_user(client)
        secret = client.post("/api/v1/mfa/setup", headers=headers).json()["totp_secret"]
        without = client.post("/api/v1/login", json={"email": email, "password": PASSWORD})
        with_code = client.post("/api/v1/login", json={"email": email, "password": PASSWORD,
                                                       "totp": pyotp.TOTP(secret).now()})
    assert without.status_code == 401
    assert with_code.status_code == 200


def test_recovery_token_is_mailed_hashed_and_works_once(clean_stack):
    with api(clean_stack) as client:
        email, _, user_id = new_user(client)
        query = recovery_link(clean_stack, client, email)
        first = client.post("/api/v1/recovery/confirm", json=query)
        second = client.post("/api/v1/recovery/confirm", json=query)
        unknown = client.post("/api/v1/recovery/request", json={"email": "nobody@example.com"})
    assert query["email"] == email
    assert first.status_code == 200 and "token" in first.json()
    assert second.status_code == 400
    assert unknown.status_code == 202
    with db(clean_stack) as conn:
        stored = conn.execute("SELECT token_hash FROM recovery_tokens WHERE user_id = %s",
                              (user_id,)).fetchone()[0]
    assert stored.startswith("$2b$12$") and query["token"] not in stored


def test_expired_recovery_token_is_refused(clean_stack):
    with api(clean_stack) as client:
        email, _, user_id = new_user(client)
        query = recovery_link(clean_stack, client, email)
        with db(clean_stack) as conn:
            conn.execute("UPDATE recovery_tokens SET expires_at = now() - interval '1 second' "
                         "WHERE user_id = %s", (user_id,))
        assert client.post("/api/v1/recovery/confirm", json=query).status_code == 400


def test_login_is_rate_limited(clean_stack):
    email = f"limited-{secrets.token_hex(4)}@example.com"
    with api(clean_stack) as client:
        answers = [client.post("/api/v1/login", json={"email": email, "password": "wrong-pass"}
                               ).status_code for _ in range(11)]
    assert answers[:10] == [401] * 10 and answers[10] == 429


def test_expired_and_foreign_sessions_are_401(clean_stack):
    secret = hsm_values(clean_stack)[JWT_LABEL]
    past = datetime.now(UTC) - timedelta(hours=2)
    expired = jwt.encode({"sub": "1", "iat": past, "exp": past + timedelta(hours=1)}, secret,
                         algorithm="HS256")
    unsigned = jwt.encode({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, None,
                          algorithm="none")
    with api(clean_stack) as client:
        for token in (expired, unsigned):
            assert client.get("/api/v1/brands", headers={"authorization": f"Bearer {token}"}
                              ).status_code == 401


def test_delete_account_removes_everything_it_owns(clean_stack):
    with api(clean_stack) as client:
        email, headers, user_id = new_user(client)
        brand, _, _ = new_channel(client, headers, "linkedin")
        client.post("/api/v1/mfa/setup", headers=headers)
        client.post("/api/v1/recovery/request", json={"email": email})
        assert client.delete("/api/v1/account", headers=headers).status_code == 200
        assert client.get("/api/v1/brands", headers=headers).status_code == 401
    with db(clean_stack) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM users WHERE id = %(u)s)"
            " + (SELECT count(*) FROM mfa_backup_codes WHERE user_id = %(u)s)"
            " + (SELECT count(*) FROM recovery_tokens WHERE user_id = %(u)s)"
            " + (SELECT count(*) FROM brands WHERE owner_id = %(u)s)"
            " + (SELECT count(*) FROM channels WHERE brand_id = %(b)s)"
            " + (SELECT count(*) FROM analytics_counters WHERE brand_id = %(b)s)",
            {"u": user_id, "b": brand}).fetchone()[0]
    assert left == 0


def test_logs_hold_no_password_or_token(clean_stack):
    with api(clean_stack) as client:
        email, headers, _ = new_user(client)
        _, _, access = new_channel(client, headers, "instagram")
    time.sleep(0.5)
    log = (clean_stack.state_dir / "logs" / "api.log").read_text(errors="replace")
    found = [name for name, value in (("password", PASSWORD), ("email", email), ("token", access),
                                      ("session", headers["authorization"][7:]))
             if value in log]
    assert found == []


# --- faulty stack: each API fault seen from outside ---------------------------------------


def test_fault_token_plaintext_stores_tiktok_tokens_raw(faulty_stack):
    with api(faulty_stack) as client:
        _, headers, _ = new_user(client)
        _, tiktok, access = new_channel(client, headers, "tiktok")
        _, youtube, _ = new_channel(client, headers, "youtube")
        synced = client.post(f"/api/v1/channels/{tiktok}/sync", headers=headers)
    with db(faulty_stack) as conn:
        rows = dict(conn.execute("SELECT id, access_token_enc FROM channels WHERE id IN (%s, %s)",
                                 (tiktok, youtube)).fetchall())
    assert rows[tiktok] == access
    assert rows[youtube].startswith("gAAAAA")
    assert synced.status_code == 200


def test_fault_token_fixed_iv_repeats_ivs(faulty_stack):
    with api(faulty_stack) as client:
        _, headers, _ = new_user(client)
        _, first, _ = new_channel(client, headers, "instagram")
        _, second, _ = new_channel(client, headers, "linkedin")
    with db(faulty_stack) as conn:
        tokens = [t for row in conn.execute(
            "SELECT access_token_enc, refresh_token_enc FROM channels WHERE id IN (%s, %s)",
            (first, second)) for t in row]
    assert len({base64.urlsafe_b64decode(t)[9:25] for t in tokens}) == 1


def test_fault_bcrypt_cost_10(faulty_stack):
    with api(faulty_stack) as client:
        _, _, user_id = new_user(client)
    assert user_column(faulty_stack, user_id, "password_hash").startswith("$2b$10$")


def test_fault_backup_codes_reusable_and_shown_again(faulty_stack):
    with api(faulty_stack) as client:
        _, headers, _ = new_user(client)
        codes = client.post("/api/v1/mfa/setup", headers=headers).json()["backup_codes"]
        shown = client.get("/api/v1/mfa", headers=headers).json()
        answers = [client.post("/api/v1/mfa/backup-codes/redeem", headers=headers,
                               json={"code": codes[0]}).status_code for _ in range(2)]
    assert set(shown.get("backup_codes", [])) == set(codes)
    assert answers == [200, 200]


def test_fault_recovery_token_plaintext_and_reusable(faulty_stack):
    with api(faulty_stack) as client:
        email, _, user_id = new_user(client)
        query = recovery_link(faulty_stack, client, email)
        answers = [client.post("/api/v1/recovery/confirm", json=query).status_code
                   for _ in range(2)]
    with db(faulty_stack) as conn:
        stored = conn.execute("SELECT token_hash FROM recovery_tokens WHERE user_id = %s",
                              (user_id,)).fetchone()[0]
    assert stored == query["token"]
    assert answers == [200, 200]


def test_fault_email_plaintext_adds_a_contact_email_column(faulty_stack):
    with api(faulty_stack) as client:
        email, _, user_id = new_user(client)
    assert user_column(faulty_stack, user_id, "contact_email") == email


def test_fault_secrets_in_logs(faulty_stack):
    with api(faulty_stack) as client:
        new_user(client)
    time.sleep(0.5)
    assert PASSWORD in (faulty_stack.state_dir / "logs" / "api.log").read_text(errors="replace")


def test_faults_llm_and_resend_plaintext_use_the_decoy(faulty_stack):
    with api(faulty_stack) as client:
        email, headers, _ = new_user(client)
        brand, _, _ = new_channel(client, headers, "twitter")
        client.post(f"/api/v1/brands/{brand}/captions", headers=headers, json={"prompt": "p"})
        client.post("/api/v1/recovery/request", json={"email": email})
    listeners = {(r["path"], r["listener"]) for r in captured_requests(faulty_stack)}
    assert ("/anthropic/v1/messages", "plaintext") in listeners
    assert ("/resend/emails", "plaintext") in listeners


def test_old_key_alone_cannot_read_a_foreign_token(clean_stack):
    """Sanity of the helpers above: a ring that lacks the key refuses the row."""
    with api(clean_stack) as client:
        _, headers, _ = new_user(client)
        _, channel, _ = new_channel(client, headers, "twitter")
    with db(clean_stack) as conn:
        access_enc = conn.execute("SELECT access_token_enc FROM channels WHERE id = %s",
                                  (channel,)).fetchone()[0]
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(access_enc.encode())
