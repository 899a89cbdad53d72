"""The sealed bundle: an in-toto statement in a DSSE envelope covers every file, any change is named,
an unknown signer is never trusted, leaks are refused, a sealed directory is never changed."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.redaction import KnownSecrets
from harness.report.bundle import BundleError, BundleRefused, BundleSealed, sign_bundle
from harness.report.commands import render_outputs
from harness.report.seal import (
    FILE_LIST,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    PUBLIC_KEY_FILE,
    SEAL_FILE,
    STATEMENT_TYPE,
    THROWAWAY_PUBLIC_KEY_FILE,
    VERIFY_MD,
    SealStatus,
    copy_unsealed,
    trusted_keys,
    verify,
)

SEAL_NAMES = (SEAL_FILE, PUBLIC_KEY_FILE, THROWAWAY_PUBLIC_KEY_FILE)


def _write_key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _statement(bundle: Path) -> dict:
    envelope = json.loads((bundle / SEAL_FILE).read_text())
    assert envelope["payloadType"] == PAYLOAD_TYPE
    return json.loads(base64.b64decode(envelope["payload"]))


def _unseal(bundle: Path) -> None:
    """What a forger does before re-signing: the seal goes, the files stay."""
    for name in (*SEAL_NAMES, FILE_LIST, VERIFY_MD):
        (bundle / name).unlink(missing_ok=True)


def test_a_fresh_bundle_is_intact_and_its_statement_lists_every_file(bundle: Path) -> None:
    statement = _statement(bundle)

    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    listed = {subject["name"] for subject in statement["subject"]}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert listed == on_disk - set(SEAL_NAMES)
    assert {"results.json", "junit.xml", "report.html", "results.sarif", "oscal-assessment-results.json",
            "oscal-assessment-plan.json", "promises.md", VERIFY_MD, FILE_LIST,
            "evidence/transit.tls_versions/tls-versions.json"} <= listed
    predicate = statement["predicate"]
    assert predicate["run_id"] == "fault0000001" and predicate["gate"]["exit_code"] == 1
    assert predicate["promises"]["TRANSIT-TLS13"] == "FAIL"
    assert predicate["tool"]["version"] and predicate["policy"]["as_recorded_sha256"]
    assert predicate["started_at"] < predicate["finished_at"]
    assert predicate["signer"]["kind"] == "throwaway"


def test_a_throwaway_signed_bundle_is_intact_but_not_trusted(bundle: Path) -> None:
    report = verify(bundle)

    assert report.status is SealStatus.UNTRUSTED and report.exit_code() == 2
    assert report.signer_kind == "throwaway" and report.signer.startswith("sha256:")
    assert "intact, signer not trusted" in report.text() and "THROWAWAY" in report.text()
    # --allow-untrusted accepts it, and says so loudly.
    assert report.exit_code(allow_untrusted=True) == 0
    assert "WHO SIGNED IS UNKNOWN" in report.text(allow_untrusted=True)
    assert (bundle / THROWAWAY_PUBLIC_KEY_FILE).is_file() and not (bundle / PUBLIC_KEY_FILE).exists()


def test_one_changed_byte_in_any_file_breaks_the_seal(bundle: Path, bundle_file: str) -> None:
    # Given a sealed bundle, when one byte of one file changes (size unchanged) ...
    path = bundle / bundle_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    report = verify(bundle)

    # ... then verification fails, naming the file (or the seal no longer holds).
    assert report.status is SealStatus.BROKEN and report.exit_code(allow_untrusted=True) == 1, report.text()
    if bundle_file not in SEAL_NAMES:
        assert report.changed == (bundle_file,)
        assert f"changed: {bundle_file}" in report.text()


def test_a_removed_file_is_named(bundle: Path, bundle_file: str) -> None:
    (bundle / bundle_file).unlink()

    report = verify(bundle)

    assert report.exit_code(allow_untrusted=True) == 1
    if bundle_file not in SEAL_NAMES:
        assert report.missing == (bundle_file,)


def test_added_files_are_named_a_stray_key_file_included(bundle: Path) -> None:
    (bundle / "evidence" / "transit.tls_versions" / "extra.json").write_text("{}")
    (bundle / "manifest.public-key.pem").write_text("anything at all")
    (bundle / PUBLIC_KEY_FILE).write_text("a second key file beside the throwaway one")

    report = verify(bundle)

    assert report.status is SealStatus.BROKEN
    assert report.added == ("audit.public-key.pem", "evidence/transit.tls_versions/extra.json",
                            "manifest.public-key.pem")


def test_a_re_signed_forgery_is_not_trusted(tmp_path: Path, bundle: Path) -> None:
    # Given a bundle sealed with the operator's key, verified under its public key ...
    _unseal(bundle)
    key = _write_key(tmp_path / "signing.pem")
    sign_bundle(bundle, key_path=key)
    trusted = trusted_keys([key.with_suffix(".pub")])
    assert verify(bundle, trusted).exit_code() == 0
    # ... when someone alters results.json and re-seals with a throwaway key ...
    (bundle / "results.json").write_text((bundle / "results.json").read_text().replace("FAIL", "PASS"))
    _unseal(bundle)
    sign_bundle(bundle)

    # ... then it is intact under its own key but not trusted: exit 2, with or without the key.
    for keys in (trusted, []):
        report = verify(bundle, keys)
        assert report.status is SealStatus.UNTRUSTED and report.exit_code() == 2, report.text()
        assert not report.trusted_by


def test_a_forger_with_a_key_file_of_his_own_is_not_trusted(tmp_path: Path, bundle: Path) -> None:
    operator = _write_key(tmp_path / "operator.pem")
    forger = _write_key(tmp_path / "forger.pem")
    _unseal(bundle)
    sign_bundle(bundle, key_path=forger)

    report = verify(bundle, trusted_keys([operator.with_suffix(".pub")]))

    assert report.status is SealStatus.UNTRUSTED and report.exit_code() == 2
    assert report.signer_kind == "file"


def test_a_swapped_payload_or_a_second_envelope_is_broken(tmp_path: Path, bundle: Path) -> None:
    line = (bundle / SEAL_FILE).read_text()
    envelope = json.loads(line)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["gate"]["exit_code"] = 0
    swapped = {**envelope, "payload": base64.b64encode(json.dumps(statement).encode()).decode()}

    (bundle / SEAL_FILE).write_text(json.dumps(swapped) + "\n")
    assert verify(bundle).status is SealStatus.BROKEN
    (bundle / SEAL_FILE).write_text(line + line)
    report = verify(bundle)
    assert report.status is SealStatus.BROKEN and "2 envelopes" in report.text()


def test_the_operators_key_signs_and_is_trusted_when_named(tmp_path: Path, bundle: Path) -> None:
    key = _write_key(tmp_path / "signing.pem")
    _unseal(bundle)

    sealed = sign_bundle(bundle, key_path=key)
    report = verify(bundle, trusted_keys([key.with_suffix(".pub")]))

    assert sealed.signer.kind == "file" and not (bundle / THROWAWAY_PUBLIC_KEY_FILE).exists()
    assert report.status is SealStatus.VERIFIED and report.exit_code() == 0
    assert report.trusted_by == sealed.signer.fingerprint
    assert sealed.signer.fingerprint in (bundle / VERIFY_MD).read_text()


def _write_ec_key(path: Path, curve: ec.EllipticCurve) -> Path:
    key = ec.generate_private_key(curve)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def test_an_ecdsa_p256_key_file_signs_and_is_trusted_when_named(tmp_path: Path, bundle: Path) -> None:
    # Given the operator's ECDSA P-256 key file (verify accepts P-256 as it accepts Ed25519)
    key = _write_ec_key(tmp_path / "signing-p256.pem", ec.SECP256R1())
    _unseal(bundle)
    # When the bundle is sealed with it
    sealed = sign_bundle(bundle, key_path=key)
    # Then it verifies under its public key and under no other, and VERIFY.md's recipe uses openssl dgst
    assert (sealed.signer.kind, sealed.signer.algorithm) == ("file", "ecdsa-p256-sha256")
    report = verify(bundle, trusted_keys([key.with_suffix(".pub")]))
    assert report.status is SealStatus.VERIFIED and report.exit_code() == 0
    assert report.trusted_by == sealed.signer.fingerprint
    other = verify(bundle, trusted_keys([_write_ec_key(tmp_path / "other.pem", ec.SECP256R1()).with_suffix(".pub")]))
    assert other.status is SealStatus.UNTRUSTED and other.exit_code() == 2
    assert "openssl dgst -sha256 -verify" in (bundle / VERIFY_MD).read_text()
    # And one changed byte breaks it, as under Ed25519
    (bundle / "results.json").write_bytes((bundle / "results.json").read_bytes() + b" ")
    assert verify(bundle, trusted_keys([key.with_suffix(".pub")])).status is SealStatus.BROKEN


def test_a_key_of_another_curve_is_refused(tmp_path: Path, bundle: Path) -> None:
    key = _write_ec_key(tmp_path / "ec384.pem", ec.SECP384R1())
    _unseal(bundle)

    with pytest.raises(BundleError, match=r"must be Ed25519 or ECDSA P-256, not .*secp384r1"):
        sign_bundle(bundle, key_path=key)


def test_a_sealed_directory_is_never_changed(bundle: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}

    with pytest.raises(BundleSealed):
        sign_bundle(bundle)
    with pytest.raises(BundleSealed):
        render_outputs(bundle)

    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before
    # A copy without the seal can be re-rendered and sealed.
    copy = copy_unsealed(bundle, tmp_path / "copy")
    render_outputs(copy)
    sign_bundle(copy)
    assert verify(copy).status is SealStatus.UNTRUSTED


def test_signing_refuses_when_the_run_reported_a_leak(bundle: Path) -> None:
    _unseal(bundle)
    (bundle / "LEAKS.txt").write_text("evidence/keys.hsm_custody/hsm-objects.json:120: HSM PIN (raw)\n")

    with pytest.raises(BundleRefused, match=r"LEAKS\.txt") as caught:
        sign_bundle(bundle)

    assert caught.value.places == ["evidence/keys.hsm_custody/hsm-objects.json:120: HSM PIN (raw)"]
    assert not (bundle / SEAL_FILE).exists()


def test_signing_refuses_a_planted_secret_and_never_prints_it(bundle: Path) -> None:
    # Given a secret the run knows, planted base64-encoded in an evidence file ...
    _unseal(bundle)
    secret = "correct-horse-battery-staple-42"
    secrets = KnownSecrets()
    secrets.add(secret, "canary password")
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


def test_verify_without_a_seal_says_so(tmp_path: Path) -> None:
    report = verify(tmp_path)

    assert report.status is SealStatus.UNSEALED and report.exit_code(allow_untrusted=True) == 1
    assert SEAL_FILE in report.text()


def test_a_damaged_seal_never_raises(bundle: Path, tmp_path: Path) -> None:
    for junk in (b"", b"{}", b"not json\n", b'{"payload":"!!","payloadType":"x","signatures":[]}',
                 b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json",'
                 b'"signatures":[{"keyid":"k","sig":"AAAA"}]}', b"\xff" * 100):
        copy = Path(shutil.copytree(bundle, tmp_path / f"c{len(list(tmp_path.iterdir()))}"))
        (copy / SEAL_FILE).write_bytes(junk)
        report = verify(copy)
        assert report.status is SealStatus.BROKEN and report.problems, junk


def _resign(bundle: Path, key: Path, statement: object) -> None:
    """Replace the seal's statement with ``statement``, validly signed by ``key`` (the bundled key)."""
    from securesystemslib.dsse import Envelope, Signature

    from harness.report.bundle import load_signing_key

    signer = load_signing_key(key)
    envelope = Envelope(json.dumps(statement).encode(), PAYLOAD_TYPE, {})
    keyid = next(iter(json.loads((bundle / SEAL_FILE).read_text())["signatures"]))["keyid"]
    envelope.signatures[keyid] = Signature(keyid, signer.sign(envelope.pae()).hex())
    (bundle / SEAL_FILE).write_text(json.dumps(envelope.to_dict()) + "\n")


def test_a_validly_signed_malformed_statement_is_broken_never_a_traceback(tmp_path: Path, bundle: Path) -> None:
    # Given a bundle sealed with a key, whose holder signs statements of every odd shape
    key = _write_key(tmp_path / "signing.pem")
    _unseal(bundle)
    sign_bundle(bundle, key_path=key)
    good = _statement(bundle)
    nested = "a seal nested 100,000 levels deep"
    odd_subjects = ([{"name": "results.json", "digest": "abc"}], [{"name": "results.json", "digest": ["x"]}],
                    [{"name": "results.json", "digest": {"sha256": 7}}], ["results.json"], [None])
    for n, shape in enumerate([*({**good, "subject": s} for s in odd_subjects),
                               {**good, "predicate": {**good["predicate"], "signer": "me"}}, nested]):
        copy = Path(shutil.copytree(bundle, tmp_path / f"c{n}"))
        if shape is nested:
            (copy / SEAL_FILE).write_text('{"payload": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
        else:
            _resign(copy, key, shape)
        # When it is verified, then it is BROKEN with a reason: no exception, no "OK"
        report = verify(copy, trusted_keys([key.with_suffix(".pub")]))
        assert report.status is SealStatus.BROKEN and report.problems, (n, report.text())
        assert report.exit_code() == 1
