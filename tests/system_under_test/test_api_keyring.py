"""The key ring on a real SoftHSM token: what a worker reads at start, and how ops replace keys.

SoftHSM reads its configuration once per process, so each step runs in a child
process with its own ``SOFTHSM2_CONF``; the children print only labels, versions
and booleans, never key values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pkcs11
import pytest

from system_under_test.api.config import parse_config
from system_under_test.api.keyring import KeyringError, keyring_from_secrets

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
CONFIG = {
    "state_dir": "/tmp/x", "listen": "unix:/tmp/x/api.sock", "public_url": "https://votriz.test",
    "database_dsn": "host=127.0.0.1 dbname=votriz user=votriz_app", "redis_host": "127.0.0.1",
    "redis_port": 6379, "hsm_module": MODULE, "hsm_token_label": "votriz",
    "llm_base_url": "https://h/a", "resend_base_url": "https://h/r",
    "platform_base_url": "https://h/p", "upstream_ca_file": "/tmp/x/ca.pem",
}
LABELS = ["votriz/token-encryption/v1", "votriz/token-encryption/v2", "votriz/jwt-signing",
          "votriz/index/email-hmac", "votriz/api/anthropic", "votriz/db/password",
          "votriz/redis/password"]

needs_softhsm = pytest.mark.skipif(
    not (os.path.exists(MODULE) and shutil.which("softhsm2-util")), reason="softhsm2 not installed")


@pytest.fixture
def token(tmp_path: Path) -> dict[str, str]:
    """A fresh token ``votriz`` with random PINs; returns the child environment."""
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    pin = os.urandom(8).hex()
    (tmp_path / "pin").write_text(pin + "\n")
    env = {"PATH": os.environ["PATH"], "SOFTHSM2_CONF": str(conf), "PYTHONPATH": str(REPO_ROOT),
           "VOTRIZ_HSM_PIN_FILE": str(tmp_path / "pin")}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "votriz",
                    "--so-pin", os.urandom(8).hex(), "--pin", pin], env=env, check=True,
                   capture_output=True)
    return env


def child(env: dict[str, str], body: str) -> dict[str, object]:
    script = textwrap.dedent("""
        import json, os
        from system_under_test.api.config import parse_config
        from system_under_test.api import keyring as k
        config = parse_config(json.loads(os.environ["CONFIG"]))
        pin = k.read_pin()
        out = {}

        def put_keys(s, labels):
            # Keys are 32 random bytes, the API key is shaped like one; a
            # versioned label's version is its CKA_ID.
            for label in labels:
                k.put_secret(s, label, os.urandom(32) if "token" in label or "jwt" in label
                             or "index" in label else b"sk-ant-api03-x", label[-1].encode()
                             if label[-2] == "v" else b"")
    """) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", script], env={**env, "CONFIG": json.dumps(CONFIG)},
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr[-800:]
    return json.loads(result.stdout)


@needs_softhsm
def test_worker_reads_every_key_and_keeps_no_session(token: dict[str, str]) -> None:
    # Given every key a worker needs, two token-key versions among them
    child(token, f"""
        with k.hsm_session(config, pin, rw=True) as s:
            put_keys(s, {LABELS!r})
    """)
    # When a worker loads its ring
    out = child(token, """
        ring = k.load_keyring(config)
        out["versions"] = sorted(ring.token_keys)
        v2 = k.Fernet(k.fernet_key(ring.token_keys[2]))
        out["primary_is_v2"] = v2.decrypt(ring.token_fernet.encrypt(b"x")) == b"x"
        out["pin_in_env"] = any(pin in v for v in os.environ.values())
        out["repr"] = repr(ring)
        # Login state is per process: were any session still logged in, a new
        # session would be too and would see the private key objects.
        token = k.pkcs11.lib(config.hsm_module).get_token(token_label="votriz")
        with token.open() as fresh:
            out["private_visible_after"] = len(list(fresh.get_objects()))
    """)
    # Then both versions are there, the highest encrypts, and nothing secret is visible
    assert out["versions"] == [1, 2] and out["primary_is_v2"] is True
    assert out["pin_in_env"] is False
    assert out["repr"] == "KeyRing(token_key_versions=[1, 2])"
    assert out["private_visible_after"] == 0


@needs_softhsm
def test_put_secret_replaces_and_destroy_removes(token: dict[str, str]) -> None:
    out = child(token, """
        with k.hsm_session(config, pin, rw=True) as s:
            k.put_secret(s, "votriz/jwt-signing", b"a" * 32)
            first = k.read_secrets(s)["votriz/jwt-signing"]
            k.put_secret(s, "votriz/jwt-signing", b"b" * 32)
            values = k.read_secrets(s)
            out["replaced"] = values["votriz/jwt-signing"] != first
            out["count"] = len(list(s.get_objects({k.Attribute.LABEL: "votriz/jwt-signing"})))
            out["destroyed"] = k.destroy_secret(s, "votriz/jwt-signing")
            out["left"] = "votriz/jwt-signing" in k.read_secrets(s)
    """)
    assert out == {"replaced": True, "count": 1, "destroyed": 1, "left": False}


@needs_softhsm
def test_a_worker_starting_while_a_secret_is_replaced_reads_the_token_again(token: dict[str, str]) -> None:
    # Given every key, and a rotation that has created the JWT secret's replacement and will
    # destroy the old object 0.5 s later (put_secret's order: both are there meanwhile)
    child(token, f"""
        with k.hsm_session(config, pin, rw=True) as s:
            put_keys(s, {LABELS!r})
    """)
    replacing = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import json, os, sys, time
        from system_under_test.api.config import parse_config
        from system_under_test.api import keyring as k
        config = parse_config(json.loads(os.environ["CONFIG"]))
        with k.hsm_session(config, k.read_pin(), rw=True) as s:
            old = list(s.get_objects({k.Attribute.LABEL: "votriz/jwt-signing"}))
            s.create_object(k.secret_template("votriz/jwt-signing", b"n" * 32))
            print("both", flush=True)
            time.sleep(0.5)
            for obj in old:
                obj.destroy()
    """)], env={**token, "CONFIG": json.dumps(CONFIG)}, stdout=subprocess.PIPE, text=True)
    try:
        assert replacing.stdout is not None and replacing.stdout.readline() == "both\n"
        # When a worker loads its ring meanwhile
        out = child(token, """
            import time
            started = time.monotonic()
            ring = k.load_keyring(config)
            out["waited_s"] = time.monotonic() - started
            out["jwt_is_the_new_one"] = ring.jwt_secret == b"n" * 32
            try:
                # (a label that stays shared is still an error, after the attempts)
                with k.hsm_session(config, pin, rw=True) as s:
                    s.create_object(k.secret_template("votriz/api/fal", b"x" * 32))
                    s.create_object(k.secret_template("votriz/api/fal", b"y" * 32))
                k.load_keyring(config, attempts=3, pause_s=0.01)
            except k.SharedLabelError as exc:
                out["lasting"] = str(exc)
        """)
    finally:
        replacing.wait(timeout=30)
    # Then it read the token again until the old object was gone, and holds the new secret
    assert replacing.returncode == 0
    assert out["jwt_is_the_new_one"] is True and 0.2 < out["waited_s"] < 5, out
    assert out["lasting"] == "two HSM objects are labelled 'votriz/api/fal'"


@needs_softhsm
def test_a_worker_reads_again_after_an_hsm_error_of_the_moment_but_never_with_a_wrong_pin(
        token: dict[str, str], tmp_path: Path) -> None:
    # Given every key, and a token whose first two logins answer CKR_GENERAL_ERROR (seen from
    # SoftHSM behind p11-kit at a Docker stack's start: the worker failed to boot, gunicorn
    # stopped, the API container ended)
    child(token, f"""
        with k.hsm_session(config, pin, rw=True) as s:
            put_keys(s, {LABELS!r})
    """)
    (tmp_path / "wrong-pin").write_text("not-the-pin\n")
    out = child(token, f"""
        real_find, opens = k.find_token, []

        class Flaky:
            def __init__(self, token):
                self.token = token

            def open(self, **kwargs):
                opens.append(kwargs.get("user_pin") == pin)
                if len(opens) <= 2:
                    raise k.pkcs11.GeneralError()
                return self.token.open(**kwargs)

        k.find_token = lambda library, label, **kwargs: Flaky(real_find(library, label, **kwargs))
        # When a worker loads its ring
        ring = k.load_keyring(config, pause_s=0.01)
        out["versions"], out["opens"] = sorted(ring.token_keys), len(opens)
        # And with a wrong PIN, on a token that answers normally
        opens.clear(); opens.extend([True, True])
        try:
            k.load_keyring(config, {str(tmp_path / "wrong-pin")!r}, pause_s=0.01)
        except k.KeyringError as exc:
            out["wrong_pin"] = (type(exc).__name__, str(exc), len(opens) - 2)
    """)
    # Then the third login read the ring; the wrong PIN was tried once and is the error it was
    assert out["versions"] == [1, 2] and out["opens"] == 3
    assert out["wrong_pin"] == ["KeyringError", "cannot open HSM token 'votriz': PinIncorrect()", 1]


@needs_softhsm
def test_staged_key_decrypts_but_never_encrypts_until_promoted(token: dict[str, str]) -> None:
    # Given v1 (encrypting) and v2 staged decrypt-only in the HSM, as rotate-token-key's
    # first phase leaves them
    base = [label for label in LABELS if label != "votriz/token-encryption/v2"]
    child(token, f"""
        with k.hsm_session(config, pin, rw=True) as s:
            put_keys(s, {base!r})
            k.put_secret(s, "votriz/token-encryption/v2", os.urandom(32), b"2", decrypt_only=True)
    """)
    # When a worker loads its ring, and again after v2 is promoted (CKA_ENCRYPT set True)
    ring_checks = """
        ring = k.load_keyring(config)
        v1, v2 = (k.Fernet(k.fernet_key(ring.token_keys[v])) for v in (1, 2))
        made = ring.token_fernet.encrypt(b"x")
        step = out.setdefault(stage, {})
        step["versions"] = sorted(ring.token_keys)
        step["decrypt_only"] = sorted(ring.token_decrypt_only)
        step["primary"] = ring.primary_token_version
        step["encrypts_under"] = [v for v, f in ((1, v1), (2, v2)) if decrypts(f, made)]
        step["fixed_iv_primary_is"] = [v for v, f in ((1, v1), (2, v2))
                                       if decrypts(f, ring.primary_token_fernet.encrypt(b"y"))]
        step["reads_v1"] = ring.token_fernet.decrypt(v1.encrypt(b"a")) == b"a"
        step["reads_v2"] = ring.token_fernet.decrypt(v2.encrypt(b"b")) == b"b"
        with k.hsm_session(config, pin) as s:
            step["hsm_decrypt_only"] = sorted(k.read_decrypt_only(s))
    """
    helper = """
        from cryptography.fernet import InvalidToken

        def decrypts(f, token):
            try:
                f.decrypt(token)
            except InvalidToken:
                return False
            return True
    """
    promote = """
        with k.hsm_session(config, pin, rw=True) as s:
            out["changed"] = k.set_encrypt_allowed(s, "votriz/token-encryption/v2", True)
    """
    out = child(token, "".join(textwrap.dedent(part) for part in (
        helper, "stage = 'staged'\n", ring_checks, promote, "stage = 'promoted'\n", ring_checks)))
    # Then while staged, v2 is read but every new token is made under v1 only
    assert out["staged"] == {
        "versions": [1, 2], "decrypt_only": [2], "primary": 1, "encrypts_under": [1],
        "fixed_iv_primary_is": [1], "reads_v1": True, "reads_v2": True,
        "hsm_decrypt_only": ["votriz/token-encryption/v2"]}
    # And once promoted, v2 encrypts and v1 is still read
    assert out["changed"] == 1
    assert out["promoted"] == {
        "versions": [1, 2], "decrypt_only": [], "primary": 2, "encrypts_under": [2],
        "fixed_iv_primary_is": [2], "reads_v1": True, "reads_v2": True, "hsm_decrypt_only": []}


def test_missing_keys_are_named() -> None:
    config = parse_config(CONFIG)
    with pytest.raises(KeyringError, match="token-encryption"):
        keyring_from_secrets({}, config)
    with pytest.raises(KeyringError, match="votriz/index/email-hmac"):
        keyring_from_secrets({"votriz/token-encryption/v1": b"k" * 32,
                              "votriz/jwt-signing": b"j" * 32,
                              "votriz/redis/password": b"r"}, config)


def test_redis_password_falls_back_to_the_configured_file(tmp_path: Path) -> None:
    (tmp_path / "redis-password").write_text("from-file\n")
    config = parse_config({**CONFIG, "redis_password_file": str(tmp_path / "redis-password")})
    values = {"votriz/token-encryption/v1": b"k" * 32, "votriz/jwt-signing": b"j" * 32,
              "votriz/index/email-hmac": b"i" * 32, "votriz/db/password": b"db"}
    assert keyring_from_secrets(values, config).redis_password == "from-file"
    values["votriz/redis/password"] = b"from-hsm"
    assert keyring_from_secrets(values, config).redis_password == "from-hsm"


def test_primary_is_the_highest_version_that_may_encrypt() -> None:
    config = parse_config(CONFIG)
    values = {f"votriz/token-encryption/v{v}": bytes([v]) * 32 for v in (1, 2, 3)}
    values.update({"votriz/jwt-signing": b"j" * 32, "votriz/index/email-hmac": b"i" * 32,
                   "votriz/db/password": b"db", "votriz/redis/password": b"r"})
    assert keyring_from_secrets(values, config).primary_token_version == 3
    ring = keyring_from_secrets(values, config, frozenset({"votriz/token-encryption/v3"}))
    assert ring.primary_token_version == 2 and ring.token_decrypt_only == {3}
    with pytest.raises(KeyringError, match="decrypt-only"):
        keyring_from_secrets(values, config, frozenset(
            f"votriz/token-encryption/v{v}" for v in (1, 2, 3)))


class _FlakyLibrary:
    """A PKCS#11 library whose token is missing for the first ``misses`` looks."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.looks = 0
        self.reinitialised = 0

    def get_token(self, token_label: str) -> str:
        self.looks += 1
        if self.looks <= self.misses:
            raise pkcs11.NoSuchToken()
        return f"token {token_label}"

    def reinitialize(self) -> None:
        self.reinitialised += 1


def test_a_token_missing_for_a_moment_is_found_after_a_rescan() -> None:
    from system_under_test.api.keyring import find_token

    library = _FlakyLibrary(misses=2)
    assert find_token(library, "votriz", pause_s=0) == "token votriz"
    assert library.looks == 3 and library.reinitialised == 2


def test_a_token_that_stays_missing_is_still_an_error() -> None:
    from system_under_test.api.keyring import find_token

    library = _FlakyLibrary(misses=100)
    with pytest.raises(pkcs11.NoSuchToken):
        find_token(library, "votriz", attempts=4, pause_s=0)
    assert library.looks == 4
