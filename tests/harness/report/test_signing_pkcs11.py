"""Sealing with a key held in the auditor's own PKCS#11 token (SoftHSM2, Ed25519 via CKM_EDDSA):
``--signing-key pkcs11:…``. The token signs; its private key is sensitive and not extractable; the
bundle verifies with the public key exported from the token, by the tool and by VERIFY.md's recipe.

Every use of the token runs in a child process with the token's ``SOFTHSM2_CONF``, as an operator's
run does (a PKCS#11 library is initialised once per process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.report.seal import SEAL_FILE, SealStatus, verify
from harness.signing import SigningError, parse_pkcs11_uri

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "auditor-pin-4711"

pytestmark = pytest.mark.skipif(not (shutil.which("softhsm2-util") and Path(MODULE).exists()),
                                reason="SoftHSM2 is not installed")

_MAKE_KEY = textwrap.dedent("""
    import sys
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters
    from asn1crypto.core import OctetString
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    module, token_label, pin, out = sys.argv[1:]
    token = pkcs11.lib(module).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=pin) as session:
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")}, local=True)
        public, private = params.generate_keypair(
            store=True, label="bundle-signing", id=b"\\x01",
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
        # The exported public key: the token's EC point, as an operator exports it.
        point = OctetString.load(bytes(public[Attribute.EC_POINT])).native
        pem = Ed25519PublicKey.from_public_bytes(point).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        open(out, "wb").write(pem)
        print(private[Attribute.SENSITIVE], private[Attribute.EXTRACTABLE])
""")


@dataclass(frozen=True)
class AuditorToken:
    """The auditor's signing token: its environment, the key's URI and its exported public key."""

    env: dict[str, str]
    uri: str
    public_key: Path
    attributes: str


@pytest.fixture(scope="module")
def auditor_token(tmp_path_factory: pytest.TempPathFactory) -> AuditorToken:
    root = tmp_path_factory.mktemp("auditor-token")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "auditor-signing",
                    "--so-pin", "so-pin-0815", "--pin", PIN], env=env, check=True, capture_output=True)
    public = root / "auditor.pub.pem"
    made = subprocess.run([sys.executable, "-c", _MAKE_KEY, MODULE, "auditor-signing", PIN, str(public)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    pin_file = root / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    uri = (f"pkcs11:token=auditor-signing;object=bundle-signing;type=private"
           f"?module-path={MODULE}&pin-source=file:{pin_file}")
    return AuditorToken(env, uri, public, made.stdout.strip())


def _cli(token: AuditorToken, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *argv], env=token.env, capture_output=True,
                          text=True, timeout=120)


def test_the_uri_is_parsed_and_never_shown_with_its_pin() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=auditor%20one;object=seal;type=private"
                           "?module-path=/usr/lib/x.so&pin-value=12%2534")

    assert (uri.token, uri.object, uri.module, uri.pin_value) == ("auditor one", "seal", "/usr/lib/x.so", "12%34")
    assert "12%34" not in uri.redacted and "12%34" not in repr(uri)
    for bad in ("pkcs11:object=x", "pkcs11:token=t", "pkcs11:token=t;object=x;type=public",
                "pkcs11:token=t;object=x?pin-source=http://x", "pkcs11:token=t;object"):
        with pytest.raises(SigningError):
            parse_pkcs11_uri(bad)


def test_a_token_key_seals_and_the_exported_key_verifies(auditor_token: AuditorToken, fault_run: Path) -> None:
    # Given the auditor's token whose Ed25519 key cannot leave it ...
    assert auditor_token.attributes == "True False"

    # ... when a report directory is sealed through PKCS#11 ...
    done = _cli(auditor_token, "sign", str(fault_run), "--key", auditor_token.uri)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pkcs11" in done.stdout and PIN not in done.stdout + done.stderr

    # ... then it verifies under the public key exported from the token, and under no other.
    report = verify(fault_run, [])
    assert report.status is SealStatus.UNTRUSTED and report.signer_kind == "pkcs11"
    check = _cli(auditor_token, "verify", str(fault_run), "--public-key", str(auditor_token.public_key))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "pkcs11 key; trusted: sha256:" in check.stdout


def test_a_wrong_pin_or_missing_key_is_one_line_and_exit_3(auditor_token: AuditorToken, fault_run: Path,
                                                           tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("not-the-pin-9999\n")
    wrong.chmod(0o600)
    bad_pin = auditor_token.uri.replace(auditor_token.uri.rsplit("pin-source=file:", 1)[1], str(wrong))
    no_key = auditor_token.uri.replace("object=bundle-signing", "object=absent")

    for uri, said in ((bad_pin, "the PIN was refused"), (no_key, "0 public_key objects match")):
        done = _cli(auditor_token, "sign", str(fault_run), "--key", uri)
        assert done.returncode == 3, done.stdout + done.stderr
        assert said in done.stderr and "Traceback" not in done.stderr
        assert "not-the-pin-9999" not in done.stdout + done.stderr
        assert not (fault_run / SEAL_FILE).exists()


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_run_is_sealed_by_the_auditors_token(auditor_token: AuditorToken, clean_stack,
                                                    tmp_path: Path) -> None:
    # Given a real run of the transit checks against the clean reference service, sealed by the token ...
    report = tmp_path / "report"
    done = _cli(auditor_token, "run", "--target", str(clean_stack.profile_path), "--report-dir", str(report),
                "--only", "transit", "--signing-key", auditor_token.uri)
    assert (report / SEAL_FILE).is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    assert PIN not in done.stdout + done.stderr

    # ... then the bundle verifies under the token's exported public key.
    check = _cli(auditor_token, "verify", str(report), "--public-key", str(auditor_token.public_key))
    assert check.returncode == 0, check.stdout + check.stderr
    assert verify(report, []).signer_kind == "pkcs11"
