"""keys.hsm_custody judges the token as found: violations planted with python-pkcs11 into the
RUNNING shared clean stack's token (a user session, as an operator with the PIN would), each
FAILs the check, and each is removed again in a ``finally``.

The planting is system_under_test.violations.hsm's (the calibration's own violations), done
here through the harness's in-process session so that the test can remove what it planted;
the last test applies each violation as calibrate does (the backend's child process).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pkcs11 import Attribute, ObjectClass

from checks.keys.hsm_custody import check_hsm_custody
from checks.keys.hsm_hardware import check_hsm_hardware
from harness.outcomes import Outcome
from harness.probes import hsm as hsm_probe
from harness.profile import load_profile
from system_under_test.backends import BACKENDS
from system_under_test.violations import hsm as planted

from .conftest import assert_no_secret_in, run_check

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextmanager
def planted_in(stack: Any, plant: Callable[[Any], None]) -> Iterator[None]:
    """``plant`` applied to the stack's token in a user session; removed on the way out."""
    hsm = load_profile(stack.profile_path).hsm
    assert hsm is not None
    with hsm_probe.open_session(hsm, rw=True) as session:
        plant(session)
    try:
        yield
    finally:
        with hsm_probe.open_session(hsm, rw=True) as session:
            planted.remove_planted(session)


def objects_of(evidence_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((evidence_dir / "hsm-objects.json").read_text())
    assert data["kind"] == "hsm_objects"
    return {row["label"]: row for row in data["objects"]}


def test_clean_token_custody_passes_and_hardware_is_manual(clean_stack, tmp_path: Path) -> None:
    verdict, secrets, evidence_dir = run_check(check_hsm_custody, clean_stack.profile_path, tmp_path)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "a session without login sees 0 object(s)" in verdict.message
    assert "(votriz/backup/key, votriz/index/email-hmac)" in verdict.message
    rows = objects_of(evidence_dir)
    assert all(row["problems"] == [] and row["readable_without_login"] is False for row in rows.values())
    assert_no_secret_in(evidence_dir, secrets)
    hardware, _, _ = run_check(check_hsm_hardware, clean_stack.profile_path, tmp_path / "hw")
    assert hardware.outcome is Outcome.MANUAL
    assert hardware.message.startswith("The token reports itself as SoftHSM project SoftHSM v2, a "
                                       "software token; an attestation cannot make it hardware")


def test_a_copy_of_the_token_key_under_another_label_fails(clean_stack, tmp_path: Path) -> None:
    # Given a copy of the current token key under votriz/token-key-copy, extractable, not sensitive
    with planted_in(clean_stack, planted.plant_key_copy):
        verdict, secrets, evidence_dir = run_check(check_hsm_custody, clean_stack.profile_path, tmp_path)
    # Then custody FAILs naming the copy and the key it copies, and its evidence row agrees
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert verdict.message.startswith(
        "1 custody problem(s) on the token: votriz/token-key-copy: holds the same key material as "
        "votriz/token-encryption/v")
    row = objects_of(evidence_dir)["votriz/token-key-copy"]
    assert row["same_material_as"][0].startswith("votriz/token-encryption/v") and row["problems"]
    assert_no_secret_in(evidence_dir, secrets)


def test_a_copy_readable_without_login_fails_and_is_named_so(clean_stack, tmp_path: Path) -> None:
    # Given the same copy with CKA_PRIVATE false
    with planted_in(clean_stack, lambda s: planted.plant_key_copy(s, planted.PUBLIC_COPY_LABEL,
                                                                  private=False)):
        verdict, secrets, evidence_dir = run_check(check_hsm_custody, clean_stack.profile_path, tmp_path)
    # Then the message names it as readable without login, and the evidence says not private
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert ("votriz/token-key-public: readable without login: a session without the PIN sees it "
            "(its value was read)") in verdict.message
    assert "private token objects" not in verdict.message
    row = objects_of(evidence_dir)["votriz/token-key-public"]
    assert row["private"] is False and row["readable_without_login"] is True
    assert_no_secret_in(evidence_dir, secrets)


def test_a_data_object_holding_the_token_key_fails(clean_stack, tmp_path: Path) -> None:
    with planted_in(clean_stack, planted.plant_data_copy):
        verdict, secrets, evidence_dir = run_check(check_hsm_custody, clean_stack.profile_path, tmp_path)
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert ("votriz/token-key-data: data object holding the key material of "
            "votriz/token-encryption/v") in verdict.message
    assert objects_of(evidence_dir)["votriz/token-key-data"]["class"] == "DATA"
    assert_no_secret_in(evidence_dir, secrets)


HEX_LABEL = "votriz/notes/hex-key"


def test_a_data_object_holding_a_hex_encoded_key_fails(clean_stack, tmp_path: Path) -> None:
    # Given a private data object holding the hex text of 32 random bytes, created by hand
    hsm = load_profile(clean_stack.profile_path).hsm
    assert hsm is not None
    with hsm_probe.open_session(hsm, rw=True) as session:
        session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                               Attribute.PRIVATE: True, Attribute.LABEL: HEX_LABEL,
                               Attribute.VALUE: os.urandom(32).hex().encode()})
    try:
        verdict, secrets, evidence_dir = run_check(check_hsm_custody, clean_stack.profile_path, tmp_path)
    finally:
        with hsm_probe.open_session(hsm, rw=True) as session:
            removed = planted.remove_planted(session, (HEX_LABEL,))
    # Then custody FAILs naming it and how it holds key material, and the evidence row agrees
    assert removed == 1
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert (f"{HEX_LABEL}: data object holding key material (hex text of 32 random-looking bytes "
            "(64 bytes))") in verdict.message
    row = objects_of(evidence_dir)[HEX_LABEL]
    assert row["key_shaped"] is True and row["key_form"].startswith("hex text of 32")
    assert_no_secret_in(evidence_dir, secrets)


@pytest.mark.parametrize(("name", "label"), [("hsm-token-key-copy", planted.COPY_LABEL),
                                             ("hsm-token-key-public", planted.PUBLIC_COPY_LABEL),
                                             ("hsm-token-key-data-object", planted.DATA_LABEL)])
def test_each_calibration_violation_is_caught(clean_stack, tmp_path: Path, name: str, label: str) -> None:
    # Given the violation applied to the running stack as calibrate applies it
    hsm = load_profile(clean_stack.profile_path).hsm
    assert hsm is not None
    try:
        BACKENDS["local"].apply_violation(clean_stack.state_dir, name)
        verdict, _, _ = run_check(check_hsm_custody, clean_stack.profile_path, tmp_path)
    finally:
        with hsm_probe.open_session(hsm, rw=True) as session:
            removed = planted.remove_planted(session)
    # Then custody FAILs naming the planted object, and exactly that object was removed after
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert f"{label}: " in verdict.message and removed == 1
