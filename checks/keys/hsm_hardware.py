"""keys.hsm_hardware: the keys' secure storage is hardware, as the page says.

Every "HSM" row of the page's key table, and its overview, promise
*hardware-backed* secure storage. Custody (keys.hsm_custody) is a machine check of
what the token holds; whether the token is hardware is judged here, from what the
token says about itself (``C_GetSlotInfo`` / ``C_GetTokenInfo``): PASS only when
its slot reports ``CKF_HW_SLOT`` and its manufacturer and model name no software
token of the key classes' list. A known software token (SoftHSM2 …) is never PASS:
MANUAL, "audit the production HSM", and an attestation is not accepted, since it
cannot contradict what the token reports about itself. A token that is neither (no
hardware slot flag, not a known software token) needs a human: MANUAL naming what
it reports, PASS on the profile's attestation (under the claim id
``[hardware] attestation_claim`` of the key classes, ``KEYS-HSM``).

The claims are every sentence of the page that says "hardware-backed": the
overview's KEYS-HSM, the at-rest section's REST-TOKENS-KEY-HSM, and the five rows
of the key table (JWT, token key, API keys, database and Redis passwords), whose
storage column reads "Hardware-backed secure storage (HSM)". The rows'
rotation or namespace promises (KEYS-*-ROTATION of the API keys, KEYS-NAMESPACED)
say nothing about hardware and are not marked.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.attestations import attested_verdict
from harness.evidence import EvidenceRecorder
from harness.key_classes import HardwareRules, KeyClasses
from harness.outcomes import Outcome, Verdict
from harness.policy import Policy
from harness.prerequisites import require_hsm
from harness.probes import hsm as hsm_probe
from harness.probes.hsm_objects import TokenFacts
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def software_token_named(facts: TokenFacts, rules: HardwareRules) -> str | None:
    """The entry of the software-token list the token's manufacturer or model contains, if any."""
    said = f"{facts.manufacturer} {facts.model}".lower()
    return next((name for name in rules.software_tokens if name.lower() in said), None)


def _reported(facts: TokenFacts) -> str:
    return f"{facts.manufacturer} {facts.model}".strip() or "(no manufacturer or model)"


def hsm_hardware_verdict(facts: TokenFacts, rules: HardwareRules,
                         attested: Verdict | None = None) -> Verdict:
    """PASS when the token reports hardware; MANUAL for a known software token; else the
    attestation's verdict, or MANUAL.

    ``attested`` is :func:`harness.attestations.attested_verdict` for the rules'
    claim: MANUAL when the profile names no attestation, PASS on a non-empty one,
    ERROR when it is empty or unreadable. It counts only for a token that is not a
    known software token: a token naming itself SoftHSM is software whatever a
    document says, so it is MANUAL (audit the production HSM), attestation or not.
    """
    software = software_token_named(facts, rules)
    details: dict[str, Any] = {"token": facts.as_evidence(), "hardware_slot": facts.hardware_slot,
                               "software_token_match": software,
                               "software_tokens": list(rules.software_tokens)}
    if facts.hardware_slot and software is None:
        return Verdict.passed(
            f"The token reports hardware: slot {facts.slot_description!r} has CKF_HW_SLOT and the "
            f"token is {_reported(facts)} (serial {facts.serial}, firmware "
            f"{facts.firmware_version}), not a known software token.", **details)
    if software is not None:
        # A token that names itself a known software token is software whatever a document says;
        # an attestation cannot contradict the token, so this is never PASS.
        message = (f"The token reports itself as {_reported(facts)}, a software token; an "
                   "attestation cannot make it hardware: audit the production HSM.")
        if attested is not None and attested.outcome is not Outcome.MANUAL:
            message += (f" The attestation {attested.details.get('attestation')} was not accepted: "
                        "it cannot contradict what the token reports about itself.")
        return Verdict.manual(message, **details, **(attested.details if attested else {}),
                              attestation_accepted=False)
    needed = (f"The token reports itself as {_reported(facts)} on slot "
              f"{facts.slot_description!r} without CKF_HW_SLOT (not reported as hardware): hardware "
              f"backing needs an attestation (profile [attestations] {rules.attestation_claim} = "
              "FILE, e.g. the HSM's model and its certificate, FIPS 140 or Common Criteria, with "
              "the key ceremony record).")
    if attested is None or attested.outcome is Outcome.MANUAL:
        return Verdict.manual(needed, **details)
    if attested.outcome is Outcome.PASS:
        return Verdict.passed(
            f"Attested by {attested.details.get('attestation')} (sha256 "
            f"{str(attested.details.get('sha256', ''))[:16]}…): the token reports itself as "
            f"{_reported(facts)} without CKF_HW_SLOT and is not a known software token; the "
            "hardware backing rests on this attestation.", **details, **attested.details)
    return Verdict(outcome=attested.outcome, message=attested.message,
                   details={**details, **attested.details})


@pytest.mark.claims("KEYS-HSM", "REST-TOKENS-KEY-HSM", "KEYS-JWT-HSM", "KEYS-TOKEN-KEY-HSM",
                    "KEYS-API-KEYS-HSM", "KEYS-DB-PASSWORD-ROTATION",
                    "KEYS-REDIS-PASSWORD-ROTATION")
@pytest.mark.access("hsm", "attestation")
def check_hsm_hardware(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                       evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    hsm = require_hsm(profile, evidence, "attest that the token holding the keys is hardware (its make, "
                      "model and certification), under [attestations] KEYS-HSM.")
    listing = hsm_probe.list_objects(hsm, known_secrets, timeout_s=policy.timeouts.request_s)
    if listing.facts is None:
        evidence.conclude(Verdict.error("The HSM probe returned no slot or token information."))
        return
    rules = key_classes.hardware
    attested = attested_verdict(profile, rules.attestation_claim,
                                "Hardware backing needs a non-empty attestation.")
    verdict = hsm_hardware_verdict(listing.facts, rules, attested)
    evidence.attach("token", listing.facts.as_evidence())
    evidence.conclude(verdict)
