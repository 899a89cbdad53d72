"""Unit tests of the reference API's pure parts: config, validation, field encryption,
and the request checks that answer before any database is touched."""

from __future__ import annotations

import base64
import json
import logging
import os

import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from system_under_test.api import app as app_module
from system_under_test.api import calls
from system_under_test.api.config import ConfigError, parse_config
from system_under_test.api.db import PoolTimeout
from system_under_test.api.fieldcrypto import FIXED_IV, FieldCipher, email_index
from system_under_test.api.keyring import KeyRing, fernet_key, token_key_versions
from system_under_test.api.validation import ApiError, email_field, password_field, path_id

SAMPLE_CONFIG: dict[str, object] = {
    "state_dir": "/tmp/sut-unit",
    "listen": "unix:/tmp/sut-unit/run/api.sock",
    "public_url": "https://votriz.test:8443",
    "database_dsn": "host=127.0.0.1 port=1 dbname=votriz user=votriz_app",
    "redis_host": "127.0.0.1",
    "redis_port": 6379,
    "hsm_module": "/usr/lib/softhsm/libsofthsm2.so",
    "hsm_token_label": "votriz",
    "llm_base_url": "https://127.0.0.1:1/anthropic",
    "resend_base_url": "https://127.0.0.1:1/resend",
    "platform_base_url": "https://127.0.0.1:1/platforms",
    "upstream_ca_file": "/tmp/sut-unit/pki/ca.pem",
    "faults": [],
}


def make_keyring(versions: tuple[int, ...] = (1,)) -> KeyRing:
    return KeyRing(token_keys={v: os.urandom(32) for v in versions}, jwt_secret=os.urandom(32),
                   email_index_key=os.urandom(32), provider_keys={}, db_password="x",
                   redis_password="y")


# --- config -------------------------------------------------------------------------------


def test_config_keeps_only_api_and_ops_faults() -> None:
    config = parse_config({**SAMPLE_CONFIG, "faults": ["hsts-missing", "bcrypt-cost-10"]})
    assert config.faults == frozenset({"bcrypt-cost-10"})
    assert config.has_fault("bcrypt-cost-10")
    assert not config.has_fault("token-plaintext")


@pytest.mark.parametrize("change", [
    {"redis_port": "6379"}, {"redis_port": 0}, {"redis_port": True}, {"faults": ["no-such"]},
    {"faults": "bcrypt-cost-10"}, {"public_url": ""}, {"database_dsn": None},
])
def test_config_refuses_bad_values(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_config({**SAMPLE_CONFIG, **change})


def test_has_fault_refuses_unknown_names() -> None:
    with pytest.raises(KeyError):
        parse_config(SAMPLE_CONFIG).has_fault("typo")


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status"), [
    ({}, 400), ({"email": 5}, 400), ({"email": "no-at-sign"}, 400), ({"email": "a@b"}, 400),
    ({"email": "x" * 300 + "@ex.com"}, 400), ({"email": "a b@ex.com"}, 400),
    ({"email": "a@ex.com\x00"}, 400),
])
def test_email_field_refuses(body: dict[str, object], status: int) -> None:
    with pytest.raises(ApiError) as raised:
        email_field(body)
    assert raised.value.status == status


def test_email_field_normalises_case() -> None:
    assert email_field({"email": " Alice@Example.COM "}) == "alice@example.com"


@pytest.mark.parametrize(("password", "new", "ok"), [
    ("short", True, False), ("long enough", True, True), ("x" * 72, True, True),
    ("x" * 73, True, False), ("é" * 37, False, False), ("é" * 36, False, True), (72, False, False),
])
def test_password_field_fits_bcrypt(password: object, new: bool, ok: bool) -> None:
    if ok:
        assert password_field({"password": password}, new=new) == password
    else:
        with pytest.raises(ApiError) as raised:
            password_field({"password": password}, new=new)
        assert raised.value.status == 400


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1e3", "٣", "9223372036854775808", "9" * 40])
def test_path_id_refuses_with_404(raw: str) -> None:
    with pytest.raises(ApiError) as raised:
        path_id(raw)
    assert raised.value.status == 404


def test_path_id_accepts_largest_bigint() -> None:
    assert path_id("9223372036854775807") == 2**63 - 1


# --- field encryption ---------------------------------------------------------------------


def test_field_cipher_round_trip_and_random_iv() -> None:
    cipher = FieldCipher(make_keyring())
    first, second = cipher.encrypt("token-A"), cipher.encrypt("token-A")
    assert first != second
    assert cipher.decrypt(first) == "token-A"
    iv = lambda t: base64.urlsafe_b64decode(t)[9:25]  # noqa: E731
    assert iv(first) != iv(second)


def test_field_cipher_fixed_iv_fault_repeats_the_iv() -> None:
    cipher = FieldCipher(make_keyring(), fixed_iv=True)
    token = cipher.encrypt("token-A")
    assert base64.urlsafe_b64decode(token)[9:25] == FIXED_IV
    assert cipher.decrypt(token) == "token-A"


def test_highest_version_encrypts_and_older_ones_still_decrypt() -> None:
    ring = make_keyring((1, 2, 3))
    old = Fernet(fernet_key(ring.token_keys[1])).encrypt(b"old").decode()
    cipher = FieldCipher(ring)
    assert cipher.decrypt(old) == "old"
    new = cipher.encrypt("new")
    assert Fernet(fernet_key(ring.token_keys[3])).decrypt(new.encode()) == b"new"
    with pytest.raises(InvalidToken):
        MultiFernet([Fernet(fernet_key(ring.token_keys[v])) for v in (1, 2)]).decrypt(new.encode())


def test_token_key_versions_parses_labels_only() -> None:
    labels = ["votriz/token-encryption/v1", "votriz/token-encryption/v12", "votriz/jwt-signing",
              "votriz/token-encryption/v0", "votriz/token-encryption/vx"]
    assert token_key_versions(labels) == {1: labels[0], 12: labels[1]}


def test_email_index_is_case_insensitive_and_keyed() -> None:
    key = os.urandom(32)
    assert email_index(key, "A@Ex.com") == email_index(key, "a@ex.com")
    assert email_index(os.urandom(32), "a@ex.com") != email_index(key, "a@ex.com")


def test_keyring_repr_shows_no_key() -> None:
    ring = make_keyring()
    assert ring.jwt_secret.hex() not in repr(ring)
    assert "token_key_versions=[1]" in repr(ring)


# --- requests refused before the database -------------------------------------------------


class NoDatabase:
    """A pool that is never free: a request that gets this far answers 503, which tells
    "input accepted, database needed" apart from a crash (500)."""

    def connection(self) -> object:
        raise PoolTimeout("no database in unit tests")


class NoRedis:
    """A Redis that is down: the login rate limiter must answer 503, not crash."""

    def pipeline(self) -> object:
        raise redis.ConnectionError("no redis in unit tests")


@pytest.fixture
def client() -> TestClient:
    config = parse_config(SAMPLE_CONFIG)
    services = app_module.Services(config=config, keyring=make_keyring(),
                                   pool=NoDatabase(),  # type: ignore[arg-type]
                                   redis=NoRedis(), http=None)  # type: ignore[arg-type]
    return TestClient(app_module.create_app(config, services), raise_server_exceptions=False)


@pytest.mark.parametrize(("method", "path", "content", "status"), [
    ("POST", "/api/v1/signup", b"{", 400),
    ("POST", "/api/v1/signup", b"[1, 2]", 400),
    ("POST", "/api/v1/signup", b'"text"', 400),
    ("POST", "/api/v1/signup", b"\xff\xfe", 400),
    ("POST", "/api/v1/signup", b"[" * 100000, 413),
    ("POST", "/api/v1/signup", b'{"email": "a@ex.com"}', 400),
    ("POST", "/api/v1/signup", b'{"email": "a@ex.com", "password": 12345678}', 400),
    ("POST", "/api/v1/signup", json.dumps({"email": "a@ex.com", "password": "x" * 73}).encode(),
     400),
    ("POST", "/api/v1/login", b'{"email": ["a@ex.com"], "password": "p"}', 400),
    ("POST", "/api/v1/login", b"x" * (70 * 1024), 413),
    ("POST", "/api/v1/recovery/request", b'{"email": null}', 400),
    ("POST", "/api/v1/recovery/confirm", b'{"email": "a@ex.com", "token": 1}', 400),
    ("POST", "/api/v1/recovery/confirm",
     json.dumps({"email": "a@ex.com", "token": "t" * 500}).encode(), 400),
    ("GET", "/api/v1/brands", None, 401),
    ("POST", "/api/v1/mfa/setup", None, 401),
    ("DELETE", "/api/v1/account", None, 401),
    ("GET", "/api/v1/nothing-here", None, 404),
    ("PATCH", "/api/v1/signup", None, 405),
])
def test_bad_requests_get_4xx_json(client: TestClient, method: str, path: str,
                                   content: bytes | None, status: int) -> None:
    response = client.request(method, path, content=content,
                              headers={"content-type": "application/json"})
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize("authorization", [
    "Bearer", "Basic abc", "Bearer not.a.jwt", "Bearer " + "a" * 5000,
])
def test_bad_bearer_tokens_are_401(client: TestClient, authorization: str) -> None:
    response = client.get("/api/v1/brands", headers={"authorization": authorization})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or expired session"} or "bearer" in \
        response.json()["error"]


def test_session_signed_with_another_secret_is_401(client: TestClient) -> None:
    other = app_module.Services.__new__(app_module.Services)
    other.keyring = make_keyring()
    token = calls.issue_session(other, 1)
    response = client.get("/api/v1/brands", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
FIELDS = ["email", "password", "totp", "token", "code", "name", "industry", "platform",
          "access_token", "refresh_token", "prompt"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/v1/signup", "/api/v1/login", "/api/v1/recovery/request",
                             "/api/v1/recovery/confirm"]),
       body=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4)
       | JSON_VALUES | st.binary(max_size=200))
@example(path="/api/v1/login", body={"email": "a@ex.com", "password": "long enough"})
@example(path="/api/v1/signup", body={"email": "a@ex.com", "password": "long enough"})
def test_any_body_is_refused_or_accepted_but_never_crashes(client: TestClient, path: str,
                                                           body: object) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    # 503 means the input passed every check and the handler wanted the database.
    assert 400 <= response.status_code < 500 or response.status_code == 503
    assert isinstance(response.json()["error"], str)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_log_lines_are_json() -> None:
    record = logging.LogRecord("votriz.api", logging.INFO, __file__, 1, "login", None, None)
    record.fields = {"user_id": 7}
    line = json.loads(calls.JsonLogFormatter().format(record))
    assert line["message"] == "login" and line["user_id"] == 7
