"""keys.no_key_elsewhere: its verdict on hand-made search results, and the check against the
reference service with a key in a process environment and in a configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.keys.no_key_elsewhere import check_no_key_elsewhere, no_key_elsewhere_verdict
from harness.keysearch import KeyHit, KeySearchResult
from harness.outcomes import Outcome
from harness.platform import OutOfReach

from .conftest import assert_no_secret_in, run_with_fault


def hit(where: str, fails: bool = True) -> KeyHit:
    return KeyHit("value", "config", where, "votriz/api/stripe (raw)", "sha256:0", fails)


def test_no_key_elsewhere_fails_naming_the_place() -> None:
    result = KeySearchResult(hits=(hit("/s/api.toml:12"),), files_searched=3)
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Keys found outside the HSM: votriz/api/stripe (raw) in config /s/api.toml:12."


def test_no_key_elsewhere_passes_with_reported_only_hits() -> None:
    result = KeySearchResult(hits=(hit("/s/edge.key:1", fails=False),), files_searched=3,
                             processes_searched=("api[pid 1 x]",))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("None of 1 HSM keys")
    assert verdict.details["reported_not_failed"] == ["votriz/api/stripe (raw) in config /s/edge.key:1"]


def test_no_key_elsewhere_incomplete_search_is_error() -> None:
    result = KeySearchResult(files_searched=3, errors=("/s/gone.toml: not found",))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.ERROR and "/s/gone.toml: not found" in verdict.message
    assert no_key_elsewhere_verdict(KeySearchResult(files_searched=1), []).outcome is Outcome.ERROR
    assert no_key_elsewhere_verdict(KeySearchResult(), ["k"]).outcome is Outcome.ERROR


def test_no_key_elsewhere_with_a_truncated_log_or_a_binary_file_is_error_not_pass() -> None:
    # Given a search that read only the first 64 MiB of a log and skipped a binary file
    result = KeySearchResult(files_searched=3, processes_searched=("api[pid 1 x]",),
                             truncated=("/s/logs/api.log",),
                             truncated_at=(("/s/logs/api.log", 64 << 20),),
                             skipped=(("/s/data.db", "binary file"), ("/s/reports", "excluded")))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    # Then it could not verify the rest: ERROR naming both, never PASS
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The search is incomplete: searched only the first 64 MiB of "
                               "/s/logs/api.log; skipped /s/data.db (binary file).")


def test_no_key_elsewhere_fails_on_a_hit_even_when_the_search_was_partial() -> None:
    result = KeySearchResult(hits=(hit("/s/logs/api.log@12"),), files_searched=3,
                             truncated=("/s/logs/api.log",),
                             truncated_at=(("/s/logs/api.log", 64 << 20),))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("Keys found outside the HSM: votriz/api/stripe (raw) in config "
                               "/s/logs/api.log@12.")


def test_no_key_elsewhere_without_process_environments_is_manual_not_pass() -> None:
    # Given files searched clean but no process environment inspected
    verdict = no_key_elsewhere_verdict(KeySearchResult(files_searched=3), ["votriz/api/stripe"])
    # Then the unobserved part is left to a human, with what to check
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "None of 1 HSM keys (raw, base64, hex) nor any key-shaped string was found in 3 files, but "
        "the environments of the service's processes could not be inspected from here. By hand: on "
        "each service host, check that no service process's environment (/proc/PID/environ, docker "
        "inspect) holds a key.")


def test_no_key_elsewhere_names_why_the_platform_cannot_see_the_processes() -> None:
    verdict = no_key_elsewhere_verdict(KeySearchResult(files_searched=3), ["votriz/api/stripe"],
                                       processes_out_of_reach=OutOfReach("backend 'remote': no processes"))
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "None of 1 HSM keys (raw, base64, hex) nor any key-shaped string was found in 3 files, but "
        "the environments of the service's processes were not searched. Backend 'remote': no "
        "processes. By hand: on each service host, check that no service process's environment "
        "(/proc/PID/environ, docker inspect) holds a key.")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(("fault", "expected"), [
    ("key-in-env", ("votriz/token-encryption/v1", " in env api")),
    ("key-in-config", ("votriz/api/stripe (raw) in config {state_dir}/api.toml:",)),
])
def test_no_key_elsewhere_fails_with_its_fault(stack_factory, tmp_path: Path, fault: str,
                                               expected: tuple[str, ...]) -> None:
    verdict, secrets, evidence_dir, info = run_with_fault(stack_factory, fault,
                                                          check_no_key_elsewhere, tmp_path)
    assert verdict.outcome is Outcome.FAIL
    for part in expected:
        assert part.format(state_dir=info.state_dir) in verdict.message
    assert_no_secret_in(evidence_dir, secrets)
