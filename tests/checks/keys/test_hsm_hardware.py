"""keys.hsm_hardware: hardware is judged from what the token says about itself; a known software
token is never hardware, attested or not; an unknown token needs an attestation. Hand-made token
facts, and the check against the reference's SoftHSM2."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from checks.keys.hsm_hardware import check_hsm_hardware, hsm_hardware_verdict
from harness.attestations import attested_verdict
from harness.outcomes import Outcome, Verdict
from harness.probes.hsm_objects import TokenFacts

from .conftest import CLASSES, run_check

RULES = CLASSES.hardware

SOFTHSM = TokenFacts(manufacturer="SoftHSM project", model="SoftHSM v2", serial="ea42286b71a3df9b",
                     hardware_version="2.6", firmware_version="2.6",
                     token_flags=("RNG", "LOGIN_REQUIRED", "USER_PIN_INITIALIZED", "TOKEN_INITIALIZED"),
                     slot_description="SoftHSM slot ID 0x71a3df9b", slot_manufacturer="SoftHSM project",
                     slot_flags=("TOKEN_PRESENT",))
LUNA = TokenFacts(manufacturer="Safenet, Inc.", model="LunaSA 7", serial="1234", hardware_version="7.0",
                  firmware_version="7.7", token_flags=("RNG", "LOGIN_REQUIRED"),
                  slot_description="Net Token Slot", slot_manufacturer="Safenet, Inc.",
                  slot_flags=("TOKEN_PRESENT", "HW_SLOT", "REMOVABLE_DEVICE"))


def test_a_token_reporting_hardware_passes() -> None:
    verdict = hsm_hardware_verdict(LUNA, RULES, Verdict.manual("no attestation"))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == ("The token reports hardware: slot 'Net Token Slot' has CKF_HW_SLOT and "
                               "the token is Safenet, Inc. LunaSA 7 (serial 1234, firmware 7.7), not a "
                               "known software token.")
    assert verdict.details["token"]["slot_flags"] == ["TOKEN_PRESENT", "HW_SLOT", "REMOVABLE_DEVICE"]


SOFTWARE_MESSAGE = ("The token reports itself as SoftHSM project SoftHSM v2, a software token; an "
                    "attestation cannot make it hardware: audit the production HSM.")


def test_softhsm_is_manual_naming_what_it_reports() -> None:
    verdict = hsm_hardware_verdict(SOFTHSM, RULES, Verdict.manual("no attestation"))
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == SOFTWARE_MESSAGE
    assert verdict.details["software_token_match"] == "softhsm"
    assert verdict.details["attestation_accepted"] is False


def test_a_software_token_claiming_a_hardware_slot_is_still_software() -> None:
    liar = TokenFacts(**{**SOFTHSM.__dict__, "slot_flags": ("TOKEN_PRESENT", "HW_SLOT")})
    verdict = hsm_hardware_verdict(liar, RULES, None)
    assert verdict.outcome is Outcome.MANUAL and verdict.message == SOFTWARE_MESSAGE


def test_an_unknown_token_without_a_hardware_slot_is_manual() -> None:
    plain = TokenFacts(**{**LUNA.__dict__, "slot_flags": ("TOKEN_PRESENT",)})
    verdict = hsm_hardware_verdict(plain, RULES, None)
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith(
        "The token reports itself as Safenet, Inc. LunaSA 7 on slot 'Net Token Slot' without "
        "CKF_HW_SLOT (not reported as hardware): hardware backing needs an attestation (profile "
        "[attestations] KEYS-HSM = FILE")


def test_an_attestation_makes_an_unknown_token_pass_and_says_on_what(tmp_path: Path) -> None:
    # Given a token that is neither reported hardware nor a known software token
    plain = TokenFacts(**{**LUNA.__dict__, "slot_flags": ("TOKEN_PRESENT",)})
    # And a profile naming an attestation for KEYS-HSM
    attestation = tmp_path / "hsm.txt"
    attestation.write_text("Keys are wrapped by a Luna 7 HSM (FIPS 140-2 L3) ...\n")
    profile = _profile_with(tmp_path, attestation)
    verdict = hsm_hardware_verdict(plain, RULES, attested_verdict(profile, "KEYS-HSM", "needed"))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith(f"Attested by {attestation} (sha256 ")
    assert verdict.message.endswith(
        "the token reports itself as Safenet, Inc. LunaSA 7 without CKF_HW_SLOT and is not a known "
        "software token; the hardware backing rests on this attestation.")
    # An empty attestation attests nothing: ERROR, never PASS.
    attestation.write_text("")
    verdict = hsm_hardware_verdict(plain, RULES, attested_verdict(profile, "KEYS-HSM", "needed"))
    assert verdict.outcome is Outcome.ERROR and "is empty" in verdict.message


def test_a_trust_me_attestation_does_not_make_softhsm_hardware(tmp_path: Path) -> None:
    # Given a SoftHSM token and an attestation that only says "trust me"
    attestation = tmp_path / "hsm.txt"
    attestation.write_text("trust me\n")
    attested = attested_verdict(_profile_with(tmp_path, attestation), "KEYS-HSM", "needed")
    assert attested.outcome is Outcome.PASS
    # When it is judged
    verdict = hsm_hardware_verdict(SOFTHSM, RULES, attested)
    # Then it stays MANUAL and says the attestation was not accepted, and why
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (f"{SOFTWARE_MESSAGE} The attestation {attestation} was not accepted: "
                               "it cannot contradict what the token reports about itself.")
    assert verdict.details["attestation_accepted"] is False
    # Even a detailed attestation, or one on a SoftHSM claiming a hardware slot, is not accepted.
    attestation.write_text("Keys are wrapped by a Luna 7 HSM (FIPS 140-2 L3), ceremony record 42.\n")
    liar = TokenFacts(**{**SOFTHSM.__dict__, "slot_flags": ("TOKEN_PRESENT", "HW_SLOT")})
    again = hsm_hardware_verdict(liar, RULES, attested_verdict(_profile_with(tmp_path, attestation),
                                                               "KEYS-HSM", "needed"))
    assert again.outcome is Outcome.MANUAL and "was not accepted" in again.message


def _profile_with(tmp_path: Path, attestation: Path) -> Any:
    # attested_verdict reads only the profile's attestations.
    return SimpleNamespace(attestations={"KEYS-HSM": attestation})


@pytest.mark.integration
@pytest.mark.slow
def test_the_reference_softhsm_token_is_manual(clean_stack, tmp_path: Path) -> None:
    verdict, _, evidence_dir = run_check(check_hsm_hardware, clean_stack.profile_path, tmp_path)
    assert verdict.outcome is Outcome.MANUAL, verdict.message
    assert verdict.message == ("The token reports itself as SoftHSM project SoftHSM v2, a software "
                               "token; an attestation cannot make it hardware: audit the production HSM.")
    assert (evidence_dir / "token.json").is_file()
