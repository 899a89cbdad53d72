"""keys.read_at_start: its verdict on hand-made process observations, and the check against
the reference service with the HSM PIN in the API's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.keys.read_at_start import check_read_at_start, read_at_start_verdict
from harness.evidence import EvidenceRecorder
from harness.key_hits import KeyHit
from harness.outcomes import CheckOutcome, Outcome
from harness.platform import OutOfReach, platform_for
from harness.probes.processes import ProcessObservation
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

from .conftest import CLASSES, POLICY, assert_no_secret_in, run_with_fault


def proc(name: str, files: tuple[str, ...] = (), **kw) -> ProcessObservation:
    return ProcessObservation(name, 10, 1, "gunicorn", (("PATH", b"/bin"),), open_files=files, **kw)


def test_read_at_start_passes() -> None:
    verdict = read_at_start_verdict([proc("api"), proc("api/child", ("/s/api.log",))], [],
                                    Path("/s/tokens"), ["hsm"])
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == ("No PIN and no key in the environment of 2 service processes; "
                               "none holds a file under /s/tokens open.")


def test_read_at_start_fails_on_pin_in_env() -> None:
    env_hit = KeyHit("value", "env", "api[pid 10 gunicorn] $VOTRIZ_HSM_PIN", "HSM user PIN (raw)",
                     "sha256:0")
    verdict = read_at_start_verdict([proc("api")], [env_hit], Path("/s/tokens"), ["hsm"])
    assert verdict.outcome is Outcome.FAIL
    assert "HSM user PIN (raw) in env api[pid 10 gunicorn] $VOTRIZ_HSM_PIN" in verdict.message


def test_read_at_start_fails_on_open_token_files_but_not_for_the_hsm() -> None:
    held = ("/s/tokens/abc/token.object",)
    verdict = read_at_start_verdict([proc("api/child", held)], [], Path("/s/tokens"), ["hsm"])
    assert verdict.outcome is Outcome.FAIL and "holds /s/tokens/abc/token.object" in verdict.message
    assert read_at_start_verdict([proc("hsm", held)], [], Path("/s/tokens"),
                                 ["hsm"]).outcome is Outcome.PASS


def test_read_at_start_fails_when_the_pin_file_stays_open() -> None:
    verdict = read_at_start_verdict([proc("api", ("/s/secrets/hsm-pin",))], [], Path("/s/tokens"),
                                    ["hsm"], Path("/s/secrets/hsm-pin"))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("Service processes keep the HSM's files open after start: "
                               "api[pid 10 gunicorn] holds the PIN file /s/secrets/hsm-pin.")


def test_read_at_start_without_processes_or_env_is_error() -> None:
    assert read_at_start_verdict([], [], None, []).outcome is Outcome.ERROR
    blind = proc("api", environ_error="cannot read /proc/10/environ: Permission denied")
    assert read_at_start_verdict([blind], [], None, []).outcome is Outcome.ERROR


def test_read_at_start_without_the_token_dir_is_manual_not_pass() -> None:
    verdict = read_at_start_verdict([proc("api")], [], None, ["hsm"])
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "No PIN and no key in the environment of 1 service processes, but the HSM's token files are "
        "not visible from here, so open files were not judged. By hand: on the HSM host, check that "
        "no service process keeps a token file open after start (ls -l /proc/PID/fd).")
    # A PIN in the environment still fails without the token directory.
    env_hit = KeyHit("value", "env", "api[pid 10 gunicorn] $PIN", "HSM user PIN (raw)", "sha256:0")
    assert read_at_start_verdict([proc("api")], [env_hit], None, ["hsm"]).outcome is Outcome.FAIL


def test_read_at_start_on_a_platform_without_processes_is_manual_with_its_reason(tmp_path: Path) -> None:
    # Given a remote target with an HSM, whose processes the platform cannot see
    profile = TargetProfile.model_validate({
        "name": "t", "backend": "remote", "edge": {"host": "votriz.test"},
        "hsm": {"module": "/usr/lib/p11.so", "token_label": "votriz", "pin": {"prompt": True}}})
    platform = platform_for(profile, POLICY)
    recorder = EvidenceRecorder("keys.read_at_start", tmp_path, KnownSecrets())
    # When the check runs
    with pytest.raises(CheckOutcome) as ended:
        check_read_at_start(profile, POLICY, platform, KnownSecrets(), recorder, CLASSES)
    # Then it is MANUAL, naming the platform's reason and what a human must attest
    reason = platform.processes()
    assert isinstance(reason, OutOfReach)
    assert ended.value.verdict.outcome is Outcome.MANUAL
    assert ended.value.verdict.message == (
        "Backend 'remote': the harness cannot inspect the service's processes (no [local] processes "
        "or [docker] project in the profile). By hand: attest that no service process holds the HSM "
        "PIN or a key in its environment and that only the HSM keeps the token files open.")
    assert reason.reason.startswith("backend 'remote': ")


@pytest.mark.integration
@pytest.mark.slow
def test_read_at_start_fails_on_the_stack_with_the_pin_in_env(stack_factory, tmp_path: Path) -> None:
    verdict, secrets, evidence_dir, _ = run_with_fault(stack_factory, "pin-in-env",
                                                       check_read_at_start, tmp_path)
    assert verdict.outcome is Outcome.FAIL
    assert "HSM user PIN (raw) in env api" in verdict.message
    assert_no_secret_in(evidence_dir, secrets)
