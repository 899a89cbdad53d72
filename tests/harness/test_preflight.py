"""harness.preflight: every file a run needs, checked before the run touches its target."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from harness.preflight import (
    PreflightError,
    check_outputs,
    check_profile,
    profile_problems,
    report_dir_problems,
    signing_key_problems,
)
from harness.profile import parse_profile

pytestmark = pytest.mark.timeout(30)


def _ca(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _secret(path: Path, mode: int = 0o600) -> Path:
    path.write_text("preflight-secret-value\n")
    path.chmod(mode)
    return path


def _profile(tmp: Path, *, anchor: Path | None = None, password: Path | None = None,
             pin: Path | None = None, module: Path | None = None, attestation: Path | None = None) -> str:
    text = 'name = "t"\n[edge]\nhost = "votriz.test"\n'
    if anchor is not None:
        text += f'trust_anchor = "{anchor}"\n'
    if password is not None:
        text += f'[database]\ndsn = "host=db dbname=v user=a"\npassword = {{ file = "{password}" }}\n'
    if pin is not None or module is not None:
        text += (f'[hsm]\nmodule = "{module or tmp / "module.so"}"\ntoken_label = "t"\n'
                 f'pin = {{ file = "{pin or tmp / "pin"}" }}\n')
    if attestation is not None:
        text += f'[attestations]\nKEYS-HSM = "{attestation}"\n'
    return text


def test_a_profile_whose_files_are_usable_has_no_problem(tmp_path: Path) -> None:
    module = tmp_path / "module.so"
    module.write_bytes(b"\x7fELF")
    attestation = tmp_path / "hsm.txt"
    attestation.write_text("FIPS 140-2 level 3, certificate #1234\n")
    profile = parse_profile(_profile(tmp_path, anchor=_ca(tmp_path / "ca.pem"),
                                     password=_secret(tmp_path / "pw"), pin=_secret(tmp_path / "pin"),
                                     module=module, attestation=attestation))
    assert profile_problems(profile) == []


def test_every_problem_of_a_profile_is_one_line_naming_its_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("no certificate here\n")
    profile = parse_profile(_profile(tmp_path, anchor=tmp_path / "ca.pem",
                                     password=_secret(tmp_path / "pw", 0o644),
                                     pin=tmp_path / "absent-pin", module=tmp_path / "absent.so",
                                     attestation=tmp_path))
    problems = profile_problems(profile)
    assert [problem.split(":", 1)[0] for problem in problems] == [
        "edge.trust_anchor", "database.password.file", "hsm.pin.file", "hsm.module", "attestations.KEYS-HSM"]
    assert "holds no PEM certificate" in problems[0]
    assert "its mode is 0644" in problems[1]
    assert "No such file or directory" in problems[2] and "No such file or directory" in problems[3]
    assert "it is a directory, not a regular file" in problems[4]
    with pytest.raises(PreflightError) as exc:
        check_profile(profile, tmp_path / "target.toml")
    lines = str(exc.value).splitlines()
    assert len(lines) == 5 and all(line.startswith(f"{tmp_path / 'target.toml'}: ") for line in lines)
    # The secret files were read to be judged; nothing of their content is said.
    assert "preflight-secret-value" not in str(exc.value)


def test_a_prompted_secret_needs_no_file(tmp_path: Path) -> None:
    text = 'name = "t"\n[edge]\nhost = "votriz.test"\n[database]\ndsn = "host=db"\npassword = { prompt = true }\n'
    assert profile_problems(parse_profile(text)) == []


def test_the_signing_key_must_be_ed25519(tmp_path: Path) -> None:
    good = tmp_path / "ed.pem"
    good.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    bad = tmp_path / "rsa.pem"
    bad.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    assert signing_key_problems(None) == [] and signing_key_problems(good) == []
    [problem] = signing_key_problems(bad)
    assert problem.startswith(f"--signing-key: {bad}: the signing key must be ") and "RSA" in problem
    assert "No such file or directory" in signing_key_problems(tmp_path / "absent")[0]


def test_a_report_dir_without_space_is_refused(tmp_path: Path) -> None:
    assert report_dir_problems(tmp_path) == []
    problems = report_dir_problems(tmp_path, min_free=1 << 62)
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path}: ") and "MiB free" in problems[0]


def test_check_outputs_names_the_key_and_the_directory(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=r"--signing-key: .*absent\.pem: cannot read the signing key"):
        check_outputs(tmp_path, tmp_path / "absent.pem")
    check_outputs(tmp_path, None)


def test_the_mailbox_password_file_and_trust_anchor_are_judged_before_the_run(tmp_path: Path) -> None:
    # Given a [mailbox] whose password file others can read and whose trust anchor holds no certificate
    (tmp_path / "mail-ca.pem").write_text("no certificate here\n")
    text = (_profile(tmp_path) + '[mailbox]\nhost = "imap.example"\nuser = "audit"\n'
            f'password = {{ file = "{_secret(tmp_path / "mail-pw", 0o644)}" }}\n'
            f'address = "audit@example.org"\ntrust_anchor = "{tmp_path / "mail-ca.pem"}"\n')
    # Then both are one line each, named by their keys, before any check runs
    problems = profile_problems(parse_profile(text))
    assert [problem.split(":", 1)[0] for problem in problems] == ["mailbox.password.file", "mailbox.trust_anchor"]
    assert "its mode is 0644" in problems[0] and "holds no PEM certificate" in problems[1]
