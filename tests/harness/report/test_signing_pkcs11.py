"""Sealing with a key held in the auditor's own PKCS#11 token (SoftHSM2, Ed25519 via CKM_EDDSA):
``--signing-key pkcs11:…``. The token signs; its private key is sensitive and not extractable; the
bundle verifies with the public key exported from the token, by the tool and by VERIFY.md's recipe.

Every use of the token runs in a child process with the token's ``SOFTHSM2_CONF``, as an operator's
run does (a PKCS#11 library is initialised once per process)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.profile import Hsm
from harness.report.seal import SEAL_FILE, VERIFY_MD, SealStatus, verify
from harness.signing import SigningError, parse_pkcs11_uri, pkcs11_signer

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
#: p11-kit's client module, which reaches a token served by ``p11-kit server``.
P11_KIT_CLIENT = Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
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
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    module, token_label, pin, out, out_p256 = sys.argv[1:]
    # Each key: (type, curve, label, id, how its EC point becomes a public key, where it is exported).
    KEYS = ((KeyType.EC_EDWARDS, "1.3.101.112", "bundle-signing", b"\\x01", Ed25519PublicKey.from_public_bytes, out),
            (KeyType.EC, "secp256r1", "bundle-signing-p256", b"\\x02",
             lambda point: ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point), out_p256))
    token = pkcs11.lib(module).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=pin) as session:
        for key_type, curve, label, key_id, from_point, exported in KEYS:
            params = session.create_domain_parameters(
                key_type, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True)
            public, private = params.generate_keypair(
                store=True, label=label, id=key_id,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
            # The exported public key: the token's EC point, as an operator exports it.
            point = OctetString.load(bytes(public[Attribute.EC_POINT])).native
            open(exported, "wb").write(from_point(point).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            print(private[Attribute.SENSITIVE], private[Attribute.EXTRACTABLE])
""")


@dataclass(frozen=True)
class AuditorToken:
    """The auditor's signing token: its environment, the key's URI and its exported public key."""

    env: dict[str, str]
    uri: str
    public_key: Path
    attributes: str
    p256_public_key: Path
    conf: Path
    pin_file: Path

    @property
    def p256_uri(self) -> str:
        return self.uri.replace("object=bundle-signing;", "object=bundle-signing-p256;")


@pytest.fixture(scope="module")
def auditor_token(tmp_path_factory: pytest.TempPathFactory) -> AuditorToken:
    root = tmp_path_factory.mktemp("auditor-token")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "auditor-signing",
                    "--so-pin", "so-pin-0815", "--pin", PIN], env=env, check=True, capture_output=True)
    public, public_p256 = root / "auditor.pub.pem", root / "auditor-p256.pub.pem"
    made = subprocess.run([sys.executable, "-c", _MAKE_KEY, MODULE, "auditor-signing", PIN, str(public),
                           str(public_p256)], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    pin_file = root / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    uri = (f"pkcs11:token=auditor-signing;object=bundle-signing;type=private"
           f"?module-path={MODULE}&pin-source=file:{pin_file}")
    return AuditorToken(env, uri, public, made.stdout.strip(), public_p256, conf, pin_file)


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
    # Given the auditor's token whose keys (Ed25519, P-256) cannot leave it ...
    assert auditor_token.attributes == "True False\nTrue False"

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


def test_a_p256_token_key_seals_and_the_exported_key_verifies(auditor_token: AuditorToken,
                                                              fault_run: Path) -> None:
    # Given the token's ECDSA P-256 key (CKM_ECDSA over SHA-256) ...
    # ... when a report directory is sealed with it through PKCS#11 ...
    done = _cli(auditor_token, "sign", str(fault_run), "--key", auditor_token.p256_uri)
    assert done.returncode == 0, done.stdout + done.stderr

    # ... then it verifies under the P-256 public key exported from the token, and under no other.
    report = verify(fault_run, [])
    assert report.status is SealStatus.UNTRUSTED and report.signer_kind == "pkcs11"
    check = _cli(auditor_token, "verify", str(fault_run), "--public-key", str(auditor_token.p256_public_key))
    assert check.returncode == 0, check.stdout + check.stderr
    other = _cli(auditor_token, "verify", str(fault_run), "--public-key", str(auditor_token.public_key))
    assert other.returncode == 2, other.stdout + other.stderr
    assert "openssl dgst -sha256 -verify" in (fault_run / VERIFY_MD).read_text()


# --- a token that accepts and never answers ------------------------------------------------------


def test_a_token_that_never_answers_is_one_line_at_the_deadline(mute_hsm: Hsm,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given p11-kit's client module pointed at a socket that accepts and never answers
    # (it blocks in C_Initialize for ever, in whatever process calls it)
    monkeypatch.setenv("P11_KIT_SERVER_ADDRESS", mute_hsm.env["P11_KIT_SERVER_ADDRESS"])
    assert mute_hsm.pin.file is not None
    uri = (f"pkcs11:token=votriz;object=bundle-signing;type=private?module-path={mute_hsm.module}"
           f"&pin-source=file:{mute_hsm.pin.file}")
    # When the signing key is opened with a 1 s deadline
    started = time.monotonic()
    with pytest.raises(SigningError) as raised:
        pkcs11_signer(uri, (1.0, "timeouts.request_s"))
    # Then it ends at the deadline, in one line naming the token and the deadline, never the PIN
    assert time.monotonic() - started < 1.0 + 5
    assert str(raised.value) == (f"pkcs11:token=votriz;object=bundle-signing (module {mute_hsm.module}): "
                                 "the token did not answer within the policy's 1 s (timeouts.request_s) "
                                 "while the harness opened the signing key")


@pytest.fixture
def token_server(auditor_token: AuditorToken) -> Iterator[tuple[dict[str, str], int]]:
    """The auditor's token served by ``p11-kit server`` (as a token on another host is reached):
    (the environment that reaches it, the server's process id)."""
    directory = Path(tempfile.mkdtemp(prefix="h16-p11-", dir="/tmp"))  # a unix socket path is short
    server = subprocess.Popen(["p11-kit", "server", "-f", "-s", "-n", str(directory / "sock"), "--provider",
                               MODULE, "pkcs11:token=auditor-signing"], env=auditor_token.env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("P11_KIT_SERVER_ADDRESS="), first
        address = first.split("=", 1)[1].split(";", 1)[0]
        yield {**auditor_token.env, "P11_KIT_SERVER_ADDRESS": address}, server.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(shutil.which("p11-kit") is None or not P11_KIT_CLIENT.exists(),
                    reason="p11-kit (server and client module) not installed")
def test_a_token_frozen_during_the_run_leaves_the_bundle_unsigned_with_exit_5(
        auditor_token: AuditorToken, token_server: tuple[dict[str, str], int], tmp_path: Path) -> None:
    # Given the auditor's key reached through a p11-kit server, and an edge that accepts and stays
    # silent; its first connection (the checks have started: the key was opened by the preflight)
    # freezes the token server (SIGSTOP), as a token host that hangs mid-run
    # (p11-kit's protocol carries CKM_ECDSA but not CKM_EDDSA: the P-256 key)
    env, server_pid = token_server
    client_uri = auditor_token.p256_uri.replace(f"module-path={MODULE}", f"module-path={P11_KIT_CLIENT}")
    frozen = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as edge:
        edge.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            held = []
            while not stop.is_set():
                try:
                    held.append(edge.accept()[0])
                except TimeoutError:
                    continue
                if not frozen.is_set():
                    os.kill(server_pid, signal.SIGSTOP)
                    frozen.set()
            for conn in held:
                conn.close()

        listener = threading.Thread(target=accept, daemon=True)
        listener.start()
        port = edge.getsockname()[1]
        profile = tmp_path / "target.toml"
        profile.write_text(f'name = "silent-edge"\n[edge]\nhost = "votriz.test"\naddress = "127.0.0.1"\n'
                           f"https_port = {port}\nhttp_port = {port}\n")
        policy = tmp_path / "policy.toml"
        policy.write_text('schema_version = 1\nname = "frozen-token"\nversion = "test"\n[timeouts]\n'
                          "connect_s = 1.0\nrequest_s = 2.0\ncommand_s = 30.0\nrun_s = 300.0\n")
        report = tmp_path / "report"
        # When the in-transit checks run, sealed by that key
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "harness", "run", "--target", str(profile), "--policy",
                               str(policy), "--report-dir", str(report), "--only", "transit",
                               "--signing-key", client_uri], env=env, capture_output=True, text=True,
                              timeout=180)
        seconds = time.monotonic() - started
        stop.set()
        listener.join(5)
    output = done.stdout + done.stderr
    # Then the run ends (the token's calls were killed at the run policy's 2 s deadline) with exit 5 and one line
    # saying the bundle is not signed because the token did not answer; no seal, no traceback, no PIN
    assert frozen.is_set(), output[-3000:]
    assert done.returncode == 5, output[-3000:]
    assert re.search(r"evidence bundle not signed: pkcs11:token=auditor-signing;object=bundle-signing-p256 "
                     r"\(module [^)]+\): the token did not answer within the policy's 2 s "
                     r"\(timeouts\.request_s\) while the harness opened the signing key", output), output[-3000:]
    assert "Traceback" not in output and PIN not in output
    assert (report / "results.json").is_file() and not (report / SEAL_FILE).exists()
    print(f"run with a token frozen mid-run: exit {done.returncode} in {seconds:.1f} s")


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
