"""at_rest.tokens_library: hand-made observations on both sides, the fault's Fernet, and real stacks."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from checks.at_rest.tokens_library import (
    check_tokens_library,
    tokens_library_out_of_reach,
    tokens_library_verdict,
)
from harness.canaries import CanarySession, MailCapture
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome
from harness.platform import platform_for
from harness.policy import load_policy
from harness.probes.api import VotrizApi
from harness.probes.loaded_libraries import (
    LoadedLibraries,
    NativeModule,
    ProcessLibraries,
    loaded_libraries_of,
)
from harness.probes.stored_tokens import observe_tokens
from harness.profile import load_profile, parse_profile
from harness.redaction import KnownSecrets

SITE = "/opt/votriz/lib/python3.11/site-packages"
BINDING = f"{SITE}/cryptography/hazmat/bindings/_rust.abi3.so"
RAW_AES = NativeModule(f"{SITE}/Cryptodome/Cipher/_raw_aes.abi3.so", "Cryptodome",
                       ("the AES T-table Te4",))


def _api(where: str, **changes: object) -> ProcessLibraries:
    base: dict[str, object] = dict(where=where, pid=12, python=True, cryptography=BINDING,
                                   cryptography_version="46.0.7", native_modules=40)
    base.update(changes)
    return ProcessLibraries(**base)  # type: ignore[arg-type]


MASTER = _api("api[pid 11 gunicorn]")
WORKER = _api("api/child[pid 12 gunicorn]")
NGINX = ProcessLibraries("nginx[pid 20 nginx]", 20, python=False)
FAKES = ProcessLibraries("fakes[pid 30 python3]", 30, python=True, native_modules=12)


def test_pass_names_each_process_its_version_and_the_limit() -> None:
    verdict = tokens_library_verdict(LoadedLibraries((MASTER, WORKER, NGINX, FAKES),
                                                     vanished=("api/child[pid 13 gunicorn]",)))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith(
        "2 Python processes of the service have the `cryptography` library's binding loaded "
        "(api[pid 11 gunicorn] (46.0.7), api/child[pid 12 gunicorn] (46.0.7)) and no other native "
        "AES implementation (92 native Python modules examined across them).")
    assert "1 other Python process loads no native AES implementation at all (fakes[pid 30 python3])" \
        in verdict.message
    assert "Ended while looked at (skipped): api/child[pid 13 gunicorn]." in verdict.message
    assert "pure Python" in verdict.message
    assert verdict.details["processes"][1]["cryptography_version"] == "46.0.7"


def test_fail_names_the_process_and_the_other_implementation() -> None:
    worker = _api("api/child[pid 12 gunicorn]", other_aes=(RAW_AES,))
    verdict = tokens_library_verdict(LoadedLibraries((MASTER, worker, NGINX)))
    assert verdict.outcome is Outcome.FAIL
    assert ("api/child[pid 12 gunicorn] has Cryptodome/Cipher/_raw_aes.abi3.so "
            "(package Cryptodome: the AES T-table Te4)") in verdict.message
    assert "api[pid 11" not in verdict.message


def test_fail_wins_over_what_could_not_be_examined() -> None:
    worker = _api("api/child[pid 12 gunicorn]", other_aes=(RAW_AES,), unexamined=("x.so: cannot open",))
    verdict = tokens_library_verdict(LoadedLibraries((worker,), unreadable=("w: cannot read",)))
    assert verdict.outcome is Outcome.FAIL


def test_fail_when_no_python_process_has_cryptography() -> None:
    verdict = tokens_library_verdict(LoadedLibraries((_api("api[pid 11 gunicorn]", cryptography=None,
                                                           cryptography_version=None), NGINX)))
    assert verdict.outcome is Outcome.FAIL
    assert "No Python process of the service has the `cryptography` library's binding" in verdict.message


@pytest.mark.parametrize(("obs", "phrase"), [
    (LoadedLibraries((MASTER,), unreadable=("api/child[pid 12 gunicorn]: cannot read "
                                             "/proc/12/maps: Permission denied",)),
     "api/child[pid 12 gunicorn]: cannot read /proc/12/maps: Permission denied"),
    (LoadedLibraries((_api("api[pid 11 gunicorn]", unexamined=("x/_c.abi3.so: cannot open: "
                                                                "Permission denied",)),)),
     "api[pid 11 gunicorn]: x/_c.abi3.so: cannot open: Permission denied"),
    (LoadedLibraries((NGINX,)), "No Python process among the service's processes"),
    (LoadedLibraries((), vanished=("api[pid 11 gunicorn]",)), "ended while looked at: api[pid 11"),
])
def test_error_when_the_processes_could_not_all_be_seen(obs: LoadedLibraries, phrase: str) -> None:
    verdict = tokens_library_verdict(obs)
    assert verdict.outcome is Outcome.ERROR
    assert phrase in verdict.message


def test_manual_when_the_platform_cannot_see_processes(tmp_path: Path) -> None:
    # Given a profile of a remote target, whose processes the harness cannot inspect
    profile = parse_profile('name = "t"\nbackend = "remote"\n[edge]\nhost = "votriz.test"\n')
    recorder = EvidenceRecorder("at_rest.tokens_library", tmp_path, KnownSecrets())
    # When the check runs, Then it ends MANUAL with the platform's reason and what to do by hand
    with pytest.raises(CheckOutcome) as ended:
        check_tokens_library(profile=profile, policy=load_policy(), evidence=recorder)
    verdict = ended.value.verdict
    assert verdict.outcome is Outcome.MANUAL
    assert "cannot inspect the service's processes" in verdict.message and "By hand:" in verdict.message
    assert tokens_library_out_of_reach("r").outcome is Outcome.MANUAL


def test_the_faults_fernet_is_read_by_cryptography_and_reads_it() -> None:
    from system_under_test.api.fieldcrypto import FIXED_IV, PycryptodomeFernet

    keys = [os.urandom(32), os.urandom(32)]
    ring = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])
    other = PycryptodomeFernet(keys)
    token = other.encrypt(b"oauth-token")
    assert ring.decrypt(token) == b"oauth-token"
    assert Fernet(base64.urlsafe_b64encode(keys[0])).decrypt(token) == b"oauth-token"
    assert other.decrypt(Fernet(base64.urlsafe_b64encode(keys[1])).encrypt(b"old")) == b"old"
    assert base64.urlsafe_b64decode(PycryptodomeFernet(keys, fixed_iv=True).encrypt(b"x"))[9:25] == FIXED_IV
    for bad in (b"not base64!", base64.urlsafe_b64encode(b"\x80" + bytes(80)),
                Fernet(Fernet.generate_key()).encrypt(b"other key"), token[:-4] + b"AAAA"):
        with pytest.raises(InvalidToken):
            other.decrypt(bad)


# --- against the reference service ------------------------------------------------------------


def _judge(profile_path: Path):  # type: ignore[no-untyped-def]
    profile = load_profile(profile_path)
    obs = loaded_libraries_of(platform_for(profile, load_policy()))
    assert isinstance(obs, LoadedLibraries)
    return tokens_library_verdict(obs)


@pytest.mark.integration
def test_clean_stack_passes(clean_stack) -> None:  # type: ignore[no-untyped-def]
    verdict = _judge(clean_stack.profile_path)
    assert verdict.outcome is Outcome.PASS, verdict.message
    # The gunicorn master and its two workers, each with cryptography's binding.
    api = [p for p in verdict.details["processes"] if p["process"].startswith("api")]
    assert len(api) >= 3 and all(p["cryptography"] for p in api), api
    assert all(p["other_aes"] == [] for p in verdict.details["processes"])


@pytest.mark.integration
def test_fault_fails_and_the_tokens_stay_fernet(stack_factory) -> None:  # type: ignore[no-untyped-def]
    with stack_factory("fernet-other-library") as info:
        # Given the API encrypting with pycryptodomex, When the check looks at its processes
        verdict = _judge(info.profile_path)
        # Then it FAILs naming the workers (which built the cipher) and pycryptodomex's AES
        assert verdict.outcome is Outcome.FAIL, verdict.message
        assert "api/child[pid " in verdict.message
        assert "Cryptodome/Cipher/_raw_aes" in verdict.message
        # And the tokens it writes are still Fernet under the HSM ring: at_rest.tokens_fernet PASSes
        profile, policy, known = load_profile(info.profile_path), load_policy(), KnownSecrets()
        from checks.at_rest.tokens_fernet import tokens_fernet_verdict

        with VotrizApi(profile) as api:
            mail = MailCapture(profile, policy)
            try:
                with CanarySession(api, mail, known) as canary:
                    tokens = tokens_fernet_verdict(observe_tokens(profile, policy, known, canary))
            finally:
                mail.close()
        assert tokens.outcome is Outcome.PASS, tokens.message
        assert "canary's 10 tokens (5 platforms) decrypt to exactly what was handed in" in tokens.message
