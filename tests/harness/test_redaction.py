"""Known secrets: long ones redacted anywhere, short ones only as whole words, absurd ones refused.

A 4-digit HSM PIN is common, and was silently left unregistered: neither
redacted nor searched for. Now it is redacted and searched as a whole word; a
secret of 1 to 3 bytes is refused (the check that needs it is ERROR saying
why); and no redaction marker carries a fingerprint that could be reversed by
trying every short value. A property test puts secrets in any text: none
survives redaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pytester_checks import audit_argv, unreachable_target

from harness.outcomes import ProbeError
from harness.profile import Hsm, SecretSource
from harness.redaction import KnownSecrets, SecretTooShort, fingerprint

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


def test_long_secret_is_redacted_anywhere_with_its_fingerprint() -> None:
    secrets = KnownSecrets()
    secret = "canary-password-0123456789"
    secrets.add(secret, "canary password")
    text = f"login {secret} and again{secret}!"
    marker = f"[REDACTED canary password {fingerprint(secret)}]"
    assert secrets.redact(text) == f"login {marker} and again{marker}!"
    assert secrets.find_in(text.encode()) == [("canary password (raw)", 6)]


def test_medium_secret_is_redacted_anywhere_but_without_a_reversible_fingerprint() -> None:
    # Given a 6-digit PIN: anyone could find it again from its SHA-256 in a million tries
    secrets = KnownSecrets()
    secrets.add("271828", "HSM user PIN")
    # Then it is still redacted inside longer text, but the marker does not name its hash
    redacted = secrets.redact("pin=271828 rows=12718289")
    assert redacted == "pin=[REDACTED HSM user PIN] rows=1[REDACTED HSM user PIN]9"
    assert hashlib.sha256(b"271828").hexdigest()[:12] not in redacted


def test_short_secret_is_redacted_and_found_only_as_a_whole_word() -> None:
    # Given a 4-digit PIN
    secrets = KnownSecrets()
    secrets.add("4711", "HSM user PIN")
    # When text holds it on its own and inside longer numbers and words
    text = 'pin=4711; "4711" rows 47110, id ab4711, port 14711, 4711\n'
    # Then only the whole words are replaced, and the marker carries no fingerprint
    assert secrets.redact(text) == ('pin=[REDACTED HSM user PIN]; "[REDACTED HSM user PIN]" rows 47110, '
                                    'id ab4711, port 14711, [REDACTED HSM user PIN]\n')
    # And the leak search finds it where it is a word, and not inside a number
    assert secrets.find_in(b"rows 47110 port 14711") == []
    assert secrets.find_in(b"rows 47110 pin:4711") == [("HSM user PIN (raw)", 15)]
    # And its other encodings too, as words (hex of "4711")
    assert secrets.find_in(b"dump 34373131 end") == [("HSM user PIN (hex)", 5)]
    assert secrets.short_labels() == ["HSM user PIN"]


def test_short_secret_stays_out_of_the_substring_needles() -> None:
    # The plaintext sweep of the audited data searches substrings: a 4-byte value would
    # match ordinary rows there, so short secrets are only in word_needles.
    secrets = KnownSecrets()
    secrets.add("4711", "HSM user PIN")
    secrets.add("canary-password-0123456789", "canary password")
    assert all(not label.startswith("HSM user PIN") for _, label in secrets.needles())
    assert (b"4711", "HSM user PIN (raw)") in secrets.word_needles()


@pytest.mark.parametrize("value", ["a", "42", "abc", b"\x00\x01\x02"])
def test_absurdly_short_secret_is_refused_with_an_error_a_check_reports(value: str | bytes) -> None:
    with pytest.raises(SecretTooShort) as refused:
        KnownSecrets().add(value, "auditor database password")
    # A ProbeError: the check that needed the secret ends as ERROR with this message
    assert isinstance(refused.value, ProbeError)
    message = str(refused.value)
    assert message.startswith(f"the auditor database password is only {len(value)} byte(s) long")
    assert "refuses to use it" in message


def test_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        KnownSecrets().add("", "canary password")


# --- through the plugin: a short secret is redacted, an absurd one makes its check ERROR ---------


CHECKS = '''
import pytest
from harness.outcomes import Verdict

@pytest.mark.claims("TRANSIT-HSTS")
def check_short_pin(evidence, known_secrets):
    known_secrets.add("4711", "HSM user PIN")
    evidence.attach("login", "C_Login with pin=4711 at 14711 ms")
    evidence.conclude(Verdict.failed("the service printed pin=4711", stdout="pin 4711"))

@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
def check_absurd_password(evidence, known_secrets):
    known_secrets.add("pw7", "auditor database password")
    evidence.conclude(Verdict.passed("logged in with pw7"))
'''


def test_plugin_redacts_a_short_secret_and_errors_on_an_absurd_one(pytester: pytest.Pytester) -> None:
    # Given two checks: one learns a 4-digit PIN and writes it out, one learns a 3-byte password
    pytester.makepyfile(**{"area/redacting": CHECKS})  # an area's folder, as checks/<area>/: ids area.<name>
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    profile = unreachable_target(pytester.path, backend=None)
    report = pytester.path / "report"
    # When the run ends
    result = pytester.runpytest(*audit_argv(profile, report))
    results = {r["check_id"]: r for r in json.loads((report / "results.json").read_text())["results"]}
    # Then the PIN is redacted as a word in the message, the details and the evidence, and the
    # unrelated 14711 is left alone
    pin = results["area.short_pin"]
    assert pin["outcome"] == "FAIL"
    assert pin["message"] == "the service printed pin=[REDACTED HSM user PIN]"
    assert pin["details"]["stdout"] == "pin [REDACTED HSM user PIN]"
    evidence = (report / "evidence" / "area.short_pin" / "login.txt").read_text()
    assert evidence == "C_Login with pin=[REDACTED HSM user PIN] at 14711 ms"
    # And the 3-byte password was refused: its check could not verify, and says why
    absurd = results["area.absurd_password"]
    assert absurd["outcome"] == "ERROR"
    assert absurd["message"].startswith("the auditor database password is only 3 byte(s) long")
    # And no secret is in anything written, so the bundle is not refused
    assert not (report / "LEAKS.txt").exists()
    for path in report.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"pin=4711" not in data and b"pin 4711" not in data, path
    assert "pin=4711" not in result.stdout.str()


# --- the HSM probe: a 4-digit PIN is now registered; a 3-digit one is refused -------------------


def _token(tmp: Path, pin: str, file_pin: str) -> Hsm:
    tokens = tmp / "tokens"
    tokens.mkdir(parents=True)
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "votriz", "--so-pin", "so-pin-0815",
                    "--pin", pin], env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=True,
                   capture_output=True)
    (tmp / "pin").write_text(file_pin + "\n")
    (tmp / "pin").chmod(0o600)
    return Hsm(module=MODULE, token_label="votriz", pin=SecretSource(file=tmp / "pin"),
               env={"SOFTHSM2_CONF": str(conf)})


needs_softhsm = pytest.mark.skipif(not MODULE.exists() or shutil.which("softhsm2-util") is None,
                                   reason="SoftHSM2 not installed")


@needs_softhsm
def test_hsm_probe_registers_a_four_digit_pin(tmp_path: Path) -> None:
    from harness.probes import hsm as hsm_probe

    secrets = KnownSecrets()
    hsm_probe.list_objects(_token(tmp_path, "4711", "4711"), secrets)
    assert secrets.items() == [(b"4711", "HSM user PIN")]


@needs_softhsm
def test_hsm_probe_refuses_a_three_digit_pin_before_using_it(tmp_path: Path) -> None:
    from harness.probes import hsm as hsm_probe

    # Given a token whose PIN file holds 3 digits (SoftHSM itself needs 4, so any token will do)
    with pytest.raises(SecretTooShort, match="the HSM user PIN is only 3 byte"):
        hsm_probe.list_objects(_token(tmp_path, "4711", "471"), KnownSecrets())


# --- property: whatever surrounds them, no registered secret survives redaction -----------------

SECRET_CHARS = st.characters(min_codepoint=33, max_codepoint=126)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secrets_=st.lists(st.text(SECRET_CHARS, min_size=4, max_size=24), min_size=1, max_size=3, unique=True),
       pieces=st.lists(st.text(max_size=12), min_size=1, max_size=4))
def test_no_secret_survives_redaction_in_any_text(secrets_: list[str], pieces: list[str]) -> None:
    known = KnownSecrets()
    for number, secret in enumerate(secrets_):
        known.add(secret, f"s{number}")
    # (A secret that is part of a marker's own words cannot be told apart from the marker.)
    assume(not any(secret in f"[REDACTED s{n}]" or "REDACTED" in secret for n in range(3) for secret in secrets_))
    text = "".join(piece + (secrets_[i % len(secrets_)] if i < len(pieces) - 1 else "")
                   for i, piece in enumerate(pieces))
    redacted = known.redact(text)
    assert known.find_in(redacted.encode()) == [], (text, redacted)


def test_a_run_of_copies_of_a_short_secret_is_redacted_in_one_piece() -> None:
    # Each copy is followed by the next one, so none is a whole word on its own; the run is.
    known = KnownSecrets()
    known.add("000:", "PIN")
    assert known.redact("000:" * 40) == "[REDACTED PIN]" * 40
    assert known.redact("x" + "000:" * 3) == "x000:[REDACTED PIN][REDACTED PIN]"
    assert known.find_in(known.redact("x" + "000:" * 3).encode()) == []


def test_a_short_secret_that_is_a_group_of_a_uuid_is_no_leak() -> None:
    known = KnownSecrets()
    known.add("4711", "HSM user PIN")
    # A random UUID's version group can read 4711 (as an OSCAL export's did, 1 run in a few):
    # an identifier, not a copy of the PIN
    assert known.find_in(b'"uuid": "1b2c3d4e-9f0a-4711-8abc-0123456789ab"') == []
    # The same PIN beside the UUID, or between hyphens outside one, is still found
    assert known.find_in(b'"uuid": "1b2c3d4e-9f0a-4711-8abc-0123456789ab", "pin": "4711"') == [
        ("HSM user PIN (raw)", 56)]
    assert known.find_in(b"code-4711-x") == [("HSM user PIN (raw)", 5)]
