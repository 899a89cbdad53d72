"""The signed bundle: every file is covered, any change is named, leaks are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.redaction import KnownSecrets
from harness.report.bundle import (
    SEAL_FILES,
    BundleError,
    BundleRefused,
    Manifest,
    SignatureStatus,
    sign_bundle,
    verify,
)
from harness.report.layout import MANIFEST_JSON, SIGNATURE_FILE, THROWAWAY_PUBLIC_KEY_FILE


def _write_key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def test_a_fresh_bundle_verifies_and_lists_every_file(bundle: Path) -> None:
    report = verify(bundle)

    assert report.ok, report.text()
    assert report.signature is SignatureStatus.VALID
    manifest = Manifest.model_validate_json((bundle / MANIFEST_JSON).read_bytes())
    listed = {entry.path for entry in manifest.files}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert listed == on_disk - set(SEAL_FILES)
    assert {"results.json", "junit.xml", "report.html", "results.sarif", "oscal-assessment-results.json",
            "evidence/transit.tls_versions/tls-versions.json"} <= listed
    assert manifest.run_id == "fault0000001" and manifest.schema_version == 1 and manifest.tool_version


def test_a_throwaway_key_is_marked_as_such(bundle: Path) -> None:
    manifest = Manifest.model_validate_json((bundle / MANIFEST_JSON).read_bytes())
    report = verify(bundle)

    assert manifest.signing_key.throwaway
    assert "THROWAWAY" in manifest.signing_key.note
    assert (bundle / THROWAWAY_PUBLIC_KEY_FILE).is_file()
    assert not report.key_trusted
    assert "THROWAWAY" in report.text() and "not who signed" in report.text()


def test_one_changed_byte_in_any_file_is_caught(bundle: Path, bundle_file: str) -> None:
    # Given a signed bundle, when one byte of one file changes (size unchanged) ...
    path = bundle / bundle_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    report = verify(bundle)

    # ... then verification fails and names that file, or the seal no longer holds.
    assert not report.ok
    if bundle_file in SEAL_FILES:
        assert report.signature is not SignatureStatus.VALID or report.manifest_error, report.text()
    else:
        assert report.changed == (bundle_file,)
        assert f"changed: {bundle_file}" in report.text()


def test_a_removed_file_is_named(bundle: Path, bundle_file: str) -> None:
    (bundle / bundle_file).unlink()

    report = verify(bundle)

    assert not report.ok
    if bundle_file not in SEAL_FILES:
        assert report.missing == (bundle_file,)
        assert report.signature is SignatureStatus.VALID


def test_an_added_file_is_named(bundle: Path) -> None:
    (bundle / "evidence" / "transit.tls_versions" / "extra.json").write_text("{}")
    (bundle / "notes.txt").write_text("added after signing")

    report = verify(bundle)

    assert not report.ok
    assert report.added == ("evidence/transit.tls_versions/extra.json", "notes.txt")
    assert report.signature is SignatureStatus.VALID


def test_a_re_signed_manifest_fails_against_the_trusted_key(tmp_path: Path, bundle: Path) -> None:
    # Given a bundle signed with the operator's key ...
    key = _write_key(tmp_path / "signing.pem")
    sign_bundle(bundle, key_path=key)
    assert verify(bundle, key.with_suffix(".pub")).ok
    # ... when someone alters a file and re-signs with a throwaway key ...
    (bundle / "results.json").write_text((bundle / "results.json").read_text().replace("FAIL", "PASS"))
    sign_bundle(bundle)

    # ... then the bundle is self-consistent, but not under the trusted key.
    assert verify(bundle).ok
    report = verify(bundle, key.with_suffix(".pub"))
    assert report.signature is SignatureStatus.INVALID
    assert "not the one that signed" in report.key_problem


def test_a_supplied_key_signs_and_its_public_key_is_trusted(tmp_path: Path, bundle: Path) -> None:
    key = _write_key(tmp_path / "signing.pem")

    signed = sign_bundle(bundle, key_path=key)
    report = verify(bundle, key.with_suffix(".pub"))

    assert not signed.throwaway and not (bundle / THROWAWAY_PUBLIC_KEY_FILE).exists()
    assert report.ok and report.key_trusted


def test_a_key_that_is_not_ed25519_is_refused(tmp_path: Path, bundle: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    with pytest.raises(BundleError, match="must be Ed25519"):
        sign_bundle(bundle, key_path=path)


def test_signing_refuses_when_the_run_reported_a_leak(bundle: Path) -> None:
    for seal in SEAL_FILES:
        (bundle / seal).unlink(missing_ok=True)
    (bundle / "LEAKS.txt").write_text("evidence/keys.hsm_custody/hsm-objects.json:120: HSM PIN (raw)\n")

    with pytest.raises(BundleRefused, match=r"LEAKS\.txt") as caught:
        sign_bundle(bundle)

    assert caught.value.places == ["evidence/keys.hsm_custody/hsm-objects.json:120: HSM PIN (raw)"]
    assert not (bundle / MANIFEST_JSON).exists() and not (bundle / SIGNATURE_FILE).exists()


def test_signing_refuses_a_planted_secret_and_never_prints_it(bundle: Path) -> None:
    # Given a secret the run knows, planted base64-encoded in an evidence file ...
    secret = "correct-horse-battery-staple-42"
    secrets = KnownSecrets()
    secrets.add(secret, "canary password")
    import base64

    planted = bundle / "evidence" / "transit.hsts" / "hsts.json"
    data = json.loads(planted.read_text())
    data["note"] = base64.b64encode(secret.encode()).decode()
    planted.write_text(json.dumps(data))

    # ... then signing refuses, naming the file and the label but not the value.
    with pytest.raises(BundleRefused) as caught:
        sign_bundle(bundle, known_secrets=secrets)
    assert any(place.startswith("evidence/transit.hsts/hsts.json:") and "canary password (base64)" in place
               for place in caught.value.places)
    assert secret not in str(caught.value) and secret not in " ".join(caught.value.places)


def test_verify_without_a_manifest_says_so(tmp_path: Path) -> None:
    report = verify(tmp_path)

    assert not report.ok
    assert report.manifest_error is not None and "manifest.json" in report.manifest_error


def test_the_manifest_validates_against_its_generated_schema(bundle: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from harness.report.bundle import manifest_schema

    jsonschema.validate(json.loads((bundle / MANIFEST_JSON).read_text()), manifest_schema())
