"""The HSM probe against real SoftHSM2 tokens created in a temporary directory.

Each test builds its own token (its own SOFTHSM2_CONF). Each look at a token
runs in a child process of its own, which these tests also prove: two tokens of
two configurations are read in turn, and an HSM that never answers is a
ProbeError within the timeout, not a hang.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from harness.outcomes import ProbeError
from harness.probes import hsm as hsm_probe
from harness.profile import Hsm, SecretSource
from harness.redaction import KnownSecrets

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "user-pin-4711"
SO_PIN = "so-pin-0815"

pytestmark = pytest.mark.skipif(
    not MODULE.exists() or shutil.which("softhsm2-util") is None, reason="SoftHSM2 not installed")


def make_token(tmp: Path, label: str = "votriz") -> Hsm:
    """A fresh SoftHSM token under ``tmp`` and the profile section that reaches it."""
    tokens = tmp / "tokens"
    tokens.mkdir(parents=True)
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN,
                    "--pin", PIN], env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=True,
                   capture_output=True)
    pin_file = tmp / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    return Hsm(module=MODULE, token_label=label, pin=SecretSource(file=pin_file),
               env={"SOFTHSM2_CONF": str(conf)})


def add_secret(hsm: Hsm, label: str, value: bytes, *, sensitive: bool = False,
               extractable: bool = True, key_id: bytes = b"") -> None:
    with hsm_probe.open_session(hsm, rw=True) as session:
        session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: label,
            Attribute.ID: key_id, Attribute.VALUE: value, Attribute.SENSITIVE: sensitive,
            Attribute.EXTRACTABLE: extractable,
        })


@pytest.fixture
def token(tmp_path: Path) -> Hsm:
    hsm = make_token(tmp_path)
    add_secret(hsm, "votriz/jwt-signing", b"J" * 32)
    add_secret(hsm, "votriz/token-encryption/v1", b"K" * 32, key_id=b"1")
    add_secret(hsm, "votriz/backup/key", b"B" * 32, sensitive=True, extractable=False)
    return hsm


def test_lists_every_object_with_custody_attributes(token: Hsm) -> None:
    secrets = KnownSecrets()
    listing = hsm_probe.list_objects(token, secrets)
    assert listing.labels() == ("votriz/backup/key", "votriz/jwt-signing", "votriz/token-encryption/v1")
    jwt_key, = listing.by_label("votriz/jwt-signing")
    assert (jwt_key.object_class, jwt_key.key_type) == ("SECRET_KEY", "GENERIC_SECRET")
    flags = (jwt_key.token, jwt_key.private, jwt_key.sensitive, jwt_key.extractable)
    assert flags == (True, True, False, True)
    assert jwt_key.local is False and jwt_key.value_len == 32 and jwt_key.can_leave_token
    backup, = listing.by_label("votriz/backup/key")
    # A key imported with its value was once readable: SoftHSM reports it as
    # neither ALWAYS_SENSITIVE nor NEVER_EXTRACTABLE, which an auditor must see.
    assert (backup.sensitive, backup.extractable, backup.always_sensitive, backup.never_extractable) == (
        True, False, False, False)
    assert not backup.can_leave_token and backup.value_len == 32
    ring, = listing.by_label("votriz/token-encryption/v1")
    assert ring.id_text == "1" and ring.id_hex == "31"
    # The listing holds no value, and the PIN was registered for redaction.
    assert "JJJJ" not in repr(listing)
    assert [label for _, label in secrets.items()] == ["HSM user PIN"]


def test_reads_values_and_registers_them_at_once(token: Hsm) -> None:
    secrets = KnownSecrets()
    snap = hsm_probe.snapshot(token, secrets, read_prefix="votriz/")
    assert snap.values.require("votriz/jwt-signing") == b"J" * 32
    assert "votriz/backup/key" in snap.values.unreadable  # sensitive: the value cannot be read
    assert "JJJJ" not in repr(snap.values)
    assert secrets.redact("x" + "J" * 32) == "x[REDACTED HSM votriz/jwt-signing " + \
        hsm_probe.fingerprint(b"J" * 32) + "]"
    with pytest.raises(ProbeError, match=r"votriz/backup/key.*sensitive"):
        snap.values.require("votriz/backup/key")


def test_sees_keys_added_by_another_process_after_first_opening(token: Hsm) -> None:
    secrets = KnownSecrets()
    assert "votriz/token-encryption/v2" not in hsm_probe.list_objects(token, secrets).labels()
    # Given a second process adds a key (as a rotation does) ...
    script = ("import os,pkcs11; from pkcs11 import Attribute as A, ObjectClass, KeyType;"
              f"t=pkcs11.lib({str(MODULE)!r}).get_token(token_label='votriz');"
              f"s=t.open(rw=True,user_pin={PIN!r});"
              "s.create_object({A.CLASS:ObjectClass.SECRET_KEY,A.KEY_TYPE:KeyType.GENERIC_SECRET,"
              "A.TOKEN:True,A.PRIVATE:True,A.LABEL:'votriz/token-encryption/v2',A.VALUE:b'L'*32});"
              "s.close()")
    subprocess.run([sys.executable, "-c", script], env={**os.environ, **token.env}, check=True)
    # ... then the next listing in this process sees it.
    assert "votriz/token-encryption/v2" in hsm_probe.list_objects(token, secrets).labels()


def test_two_configurations_in_one_process(tmp_path: Path) -> None:
    first = make_token(tmp_path / "a", label="first")
    second = make_token(tmp_path / "b", label="second")
    add_secret(first, "votriz/a", b"a" * 16)
    add_secret(second, "votriz/b", b"b" * 16)
    secrets = KnownSecrets()
    assert hsm_probe.list_objects(first, secrets).labels() == ("votriz/a",)
    assert hsm_probe.list_objects(second, secrets).labels() == ("votriz/b",)
    assert hsm_probe.list_objects(first, secrets).labels() == ("votriz/a",)


def test_wrong_pin_is_a_precise_probe_error(token: Hsm, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("not-the-pin\n")
    wrong.chmod(0o600)
    bad = token.model_copy(update={"pin": SecretSource(file=wrong)})
    with pytest.raises(ProbeError, match=r"the PIN was refused by token 'votriz' \(PIN from .*wrong-pin\)"):
        hsm_probe.list_objects(bad, KnownSecrets())


def test_unreadable_pin_file_is_a_probe_error(token: Hsm, tmp_path: Path) -> None:
    bad = token.model_copy(update={"pin": SecretSource(file=tmp_path / "absent")})
    with pytest.raises(ProbeError, match=r"HSM user PIN: cannot read .*absent"):
        hsm_probe.list_objects(bad, KnownSecrets())


def test_missing_token_names_the_tokens_present(token: Hsm) -> None:
    bad = token.model_copy(update={"token_label": "elsewhere"})
    with pytest.raises(ProbeError, match=r"no token labelled 'elsewhere'.*tokens present: votriz"):
        hsm_probe.list_objects(bad, KnownSecrets())


def test_no_token_at_all_points_at_the_configuration(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {empty}\nobjectstore.backend = file\n")
    (tmp_path / "pin").write_text(PIN)
    (tmp_path / "pin").chmod(0o600)
    hsm = Hsm(module=MODULE, token_label="votriz", pin=SecretSource(file=tmp_path / "pin"),
              env={"SOFTHSM2_CONF": str(conf)})
    with pytest.raises(ProbeError, match=r"no initialised token is visible"):
        hsm_probe.list_objects(hsm, KnownSecrets())


def test_wrong_module_path_is_a_probe_error(token: Hsm, tmp_path: Path) -> None:
    bad = token.model_copy(update={"module": tmp_path / "libnothing.so"})
    with pytest.raises(ProbeError, match=r"PKCS#11 module .*libnothing.so does not exist"):
        hsm_probe.list_objects(bad, KnownSecrets())
    not_a_module = tmp_path / "libfake.so"
    not_a_module.write_bytes(b"\x7fELF not really")
    with pytest.raises(ProbeError, match=r"cannot load PKCS#11 module .*libfake.so"):
        hsm_probe.list_objects(token.model_copy(update={"module": not_a_module}), KnownSecrets())


def test_softhsm_token_dir_is_read_from_the_configuration(token: Hsm) -> None:
    tokendir = hsm_probe.softhsm_token_dir(token)
    assert tokendir is not None and tokendir.name == "tokens" and tokendir.is_dir()


def test_pkcs11_library_is_cached_per_module_path(token: Hsm) -> None:
    hsm_probe.list_objects(token, KnownSecrets())
    assert pkcs11.lib(str(MODULE)) is pkcs11.lib(str(MODULE))


# --- an HSM that accepts and never answers ------------------------------------------------------

def test_an_hsm_that_never_answers_is_a_probe_error_within_the_timeout(mute_hsm: Hsm, token: Hsm) -> None:
    # When the token is listed with a 1 s timeout
    secrets = KnownSecrets()
    start = time.monotonic()
    with pytest.raises(ProbeError) as raised:
        hsm_probe.list_objects(mute_hsm, secrets, timeout_s=1.0)
    # Then it is a ProbeError naming the module, its server and the timeout, after about 1 s
    address = mute_hsm.env["P11_KIT_SERVER_ADDRESS"]
    assert str(raised.value) == (f"HSM: PKCS#11 module {mute_hsm.module} (server {address}) did not "
                                 "answer within 1 s (token 'votriz')")
    assert time.monotonic() - start < 4
    # And the process that was stuck is gone, and the next look at a token that answers works
    assert not [child for child in multiprocessing.active_children() if child.name == "votriz-audit-hsm"]
    assert hsm_probe.list_objects(token, secrets, timeout_s=10).labels()[0] == "votriz/backup/key"


def test_a_child_that_dies_without_answering_is_a_probe_error_with_its_exit_code(mute_hsm: Hsm) -> None:
    # Given a look at the token that hangs (as above), whose process is killed while it waits
    # (as a module that crashes would end it)
    errors: list[ProbeError] = []

    def look() -> None:
        try:
            hsm_probe.list_objects(mute_hsm, KnownSecrets(), timeout_s=30)
        except ProbeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=look)
    thread.start()
    deadline = time.monotonic() + 10
    children: list[multiprocessing.process.BaseProcess] = []
    while not children and time.monotonic() < deadline:
        children = [c for c in multiprocessing.active_children() if c.name == "votriz-audit-hsm"]
        time.sleep(0.05)
    assert children, "the child process never started"
    os.kill(children[0].pid, signal.SIGKILL)
    thread.join(timeout=10)
    # Then the harness is told at once, with the exit code, not after its 30 s timeout
    assert not thread.is_alive() and len(errors) == 1
    assert str(errors[0]) == (f"HSM: the process reading token 'votriz' through PKCS#11 module "
                              f"{mute_hsm.module} (server {mute_hsm.env['P11_KIT_SERVER_ADDRESS']}) "
                              "ended without an answer (exit code -9)")


# --- a survey: every object as found, with and without login -----------------------------------

def add_data(hsm: Hsm, label: str, value: bytes, *, private: bool = True) -> None:
    with hsm_probe.open_session(hsm, rw=True) as session:
        session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                               Attribute.PRIVATE: private, Attribute.LABEL: label,
                               Attribute.VALUE: value})


def add_non_extractable_aes_key(hsm: Hsm, label: str) -> bytes:
    """A random AES-256 key that may encrypt but neither sign nor leave the token; its bytes."""
    value = os.urandom(32)
    with hsm_probe.open_session(hsm, rw=True) as session:
        session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: label,
            Attribute.VALUE: value, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
            Attribute.SIGN: False, Attribute.ENCRYPT: True})
    return value


def test_a_survey_fingerprints_every_object_and_finds_copies(token: Hsm) -> None:
    # Given copies of the token key: extractable under another label, not private, in a data
    # object; and a non-extractable copy of the sensitive backup key
    add_secret(token, "votriz/token-key-copy", b"K" * 32)
    with hsm_probe.open_session(token, rw=True) as session:
        session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.LABEL: "votriz/public-copy",
            Attribute.VALUE: b"K" * 32, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    add_data(token, "votriz/blob", b"K" * 32)
    add_secret(token, "votriz/backup/copy", b"B" * 32, sensitive=True, extractable=False)
    random_data = os.urandom(32)
    add_data(token, "votriz/random", random_data)
    # When the token is surveyed
    secrets = KnownSecrets()
    listing = hsm_probe.snapshot(token, secrets, survey=True).listing
    by = {obj.label: obj for obj in listing.objects}
    # Then the copies share a fingerprint with their original, readable or not ...
    ring = set(by["votriz/token-encryption/v1"].fingerprints)
    assert ring and all(ring & set(by[label].fingerprints)
                        for label in ("votriz/token-key-copy", "votriz/public-copy", "votriz/blob"))
    backup = set(by["votriz/backup/key"].fingerprints)
    assert backup and backup == set(by["votriz/backup/copy"].fingerprints) and not backup & ring
    assert by["votriz/backup/key"].value_read is False
    assert by["votriz/backup/key"].fingerprint_method.startswith("HMAC-SHA256 keyed by the material")
    assert not set(by["votriz/jwt-signing"].fingerprints) & ring
    # ... a data object of random bytes has the shape of a key, one of repeated bytes not
    assert by["votriz/random"].key_shaped is True and by["votriz/blob"].key_shaped is False
    # ... the session without login sees only the non-private objects, and read the value
    assert listing.public_objects is not None
    assert [(o.label, o.value_read) for o in listing.public_objects] == [("votriz/public-copy", True)]
    # ... and no value or fingerprint is in the observation's repr
    text = repr(listing)
    assert "KKKK" not in text and "hmac-sha256" not in text and random_data.hex() not in text
    # ... and the token says what it is
    assert listing.facts is not None
    assert (listing.facts.manufacturer, listing.facts.model) == ("SoftHSM project", "SoftHSM v2")
    assert "HW_SLOT" not in listing.facts.slot_flags and "LOGIN_REQUIRED" in listing.facts.token_flags


def test_fingerprints_change_from_survey_to_survey(token: Hsm) -> None:
    # The random block is drawn for each survey: a fingerprint seen once says nothing later.
    first = hsm_probe.snapshot(token, KnownSecrets(), survey=True).listing.by_label("votriz/jwt-signing")
    second = hsm_probe.snapshot(token, KnownSecrets(), survey=True).listing.by_label("votriz/jwt-signing")
    assert first[0].fingerprints and not set(first[0].fingerprints) & set(second[0].fingerprints)


def test_a_plain_listing_neither_fingerprints_nor_opens_a_public_session(token: Hsm) -> None:
    listing = hsm_probe.list_objects(token, KnownSecrets())
    assert listing.public_objects is None and all(not o.fingerprints for o in listing.objects)
    assert listing.facts is not None and listing.facts.model == "SoftHSM v2"


def test_a_non_extractable_aes_key_is_fingerprinted_by_the_token(token: Hsm) -> None:
    # Given an AES key that may encrypt but neither sign nor leave, and its bytes in a data object
    value = add_non_extractable_aes_key(token, "votriz/aes")
    add_data(token, "votriz/aes-bytes", value)
    listing = hsm_probe.snapshot(token, KnownSecrets(), survey=True).listing
    aes, = listing.by_label("votriz/aes")
    data, = listing.by_label("votriz/aes-bytes")
    assert aes.fingerprint_method == "AES-ECB encryption of a per-run random block (key check value)"
    assert set(aes.fingerprints) & set(data.fingerprints)
    assert data.key_shaped is True


def test_a_data_object_holding_a_key_as_hex_text_shares_its_fingerprint(token: Hsm) -> None:
    # Given an AES key that will not leave the token, and its bytes as "key=<hex>" in a data object
    value = add_non_extractable_aes_key(token, "votriz/aes")
    add_data(token, "votriz/aes-hex", b"key=" + value.hex().encode() + b"\n")
    # When the token is surveyed
    listing = hsm_probe.snapshot(token, KnownSecrets(), survey=True).listing
    aes, = listing.by_label("votriz/aes")
    data, = listing.by_label("votriz/aes-hex")
    # Then the text decodes to the key's material, and its form is named without its value
    assert set(aes.fingerprints) & set(data.fingerprints)
    assert data.key_shaped is True and data.key_form == "hex text of 32 random-looking bytes (69 bytes)"
    assert value.hex() not in repr(listing)
