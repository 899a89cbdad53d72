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
            for label in {LABELS!r}:
                k.put_secret(s, label, os.urandom(32) if "token" in label or "jwt" in label
                             or "index" in label else b"sk-ant-api03-x", label[-1].encode()
                             if label[-2] == "v" else b"")
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
