"""transit.outbound_https on a real local stack, with a profile that has no ``[capture]``:
PASS clean, FAIL once a plaintext upstream URL is configured into the running API (no fault)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.profile import TargetProfile, load_profile
from harness.redaction import KnownSecrets
from system_under_test.backends import BACKENDS
from system_under_test.common.pki import FAKES_HOST
from system_under_test.violations.outbound import api_config_path, roll_api_workers
from system_under_test.violations.stack import RunningStack

from .conftest import run_check

pytestmark = pytest.mark.integration
CHECK = "transit.outbound_https"


def without_capture(profile_path: Path, directory: Path) -> TargetProfile:
    """A copy of the stack's profile without ``[capture]``, as production has it."""
    data = tomllib.loads(profile_path.read_text(encoding="utf-8"))
    del data["capture"]
    copy = directory / "target-without-capture.toml"
    copy.write_text(tomli_w.dumps(data), encoding="utf-8")
    return load_profile(copy)


def test_clean_stack_passes_on_the_wire_without_capture(clean_stack: Any, tmp_path: Path) -> None:
    # Given the clean stack audited through a profile without [capture],
    profile = without_capture(clean_stack.profile_path, tmp_path)
    secrets = KnownSecrets()
    # when the check runs,
    verdict, _ = run_check(CHECK, profile, load_policy(), tmp_path, secrets)
    # then both calls were seen over TLS in the API's namespace, and no secret reached the evidence.
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "the LLM (Anthropic) call (POST /brands/" in verdict.message
    assert "the Resend call (POST /recovery/request, answered 202) over" in verdict.message
    assert "ClientHello without a server name" in verdict.message  # the fakes are 127.0.0.1
    assert verdict.details["canary_removed"] is True
    for path in (tmp_path / CHECK).iterdir():
        assert not secrets.find_in(path.read_bytes()), path.name


@pytest.fixture(scope="module")
def stack_to_break() -> Any:
    """A clean local stack of this module's own: the violations make the running API call its
    upstreams over plaintext, and the fakes keep every request they saw, so the shared clean
    stack is not the place for them (other tests judge its capture log)."""
    from audit_cli import running_stack

    with running_stack() as info:
        yield info


@pytest.mark.parametrize(("violation", "request_line"), [
    ("api-llm-url-plaintext", "POST /anthropic/v1/messages"),
    ("api-resend-url-plaintext", "POST /resend/emails"),
])
def test_a_plaintext_upstream_configured_into_the_running_api_fails(
        violation: str, request_line: str, stack_to_break: Any, tmp_path: Path) -> None:
    clean_stack = stack_to_break
    stack = RunningStack.open(clean_stack.state_dir)
    config = api_config_path(stack)
    as_found = config.read_text(encoding="utf-8")
    plaintext_port = stack.profile["capture"]["plaintext_port"]
    profile = without_capture(clean_stack.profile_path, tmp_path)
    try:
        # Given the running API's upstream URL edited to http:// and its workers rolled (no fault),
        BACKENDS["local"].apply_violation(clean_stack.state_dir, violation)
        assert "faults = []" in config.read_text(encoding="utf-8") or "faults" not in as_found
        # when the check runs without [capture],
        verdict, _ = run_check(CHECK, profile, load_policy(), tmp_path)
    finally:
        with config.open("r+", encoding="utf-8") as handle:
            handle.write(as_found)
            handle.truncate()
        roll_api_workers(stack)
    # then it FAILs naming the plaintext request and where it went, and the canary is gone.
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert f"{request_line} to 127.0.0.1:{plaintext_port} in plaintext" in verdict.message
    assert verdict.details["canary_removed"] is True


# --- once on Docker: the capture enters the API container's network namespace ---------------

@pytest.fixture(scope="module")
def docker_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from system_under_test.docker import engine, stack

    try:
        client = engine.docker_client()
    except stack.StackError as exc:
        pytest.fail(f"this test needs a Docker engine: {exc}")
    state_dir = tmp_path_factory.mktemp("docker-wire") / "state"
    try:
        yield stack.up(state_dir, client=client)
    finally:
        stack.down(state_dir, client=client)
        client.close()


@pytest.mark.slow
def test_docker_api_container_clean_passes_then_a_plaintext_upstream_fails(docker_stack: Any,
                                                                           tmp_path: Path) -> None:
    # Given the Docker reference audited through a profile without [capture],
    profile = without_capture(docker_stack.profile_path, tmp_path)
    clean, _ = run_check(CHECK, profile, load_policy(), tmp_path / "clean")
    # then the clean API's calls went over TLS, seen inside the API container's namespace;
    assert clean.outcome is Outcome.PASS, clean.message
    assert f"container {docker_stack.containers['api']}" in clean.message
    assert f"ClientHello for '{FAKES_HOST}'" in clean.message
    # when its Resend URL is edited to http:// and its workers rolled (no fault switch),
    BACKENDS["docker"].apply_violation(docker_stack.state_dir, "api-resend-url-plaintext")
    verdict, _ = run_check(CHECK, profile, load_policy(), tmp_path / "violated")
    # then the check FAILs naming the plaintext request and the fakes' plaintext port.
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert "POST /resend/emails to " in verdict.message and ":8080 in plaintext" in verdict.message
