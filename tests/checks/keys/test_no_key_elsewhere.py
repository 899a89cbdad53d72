"""keys.no_key_elsewhere: its verdict on hand-made search results, and the check against the
reference service with a key in a process environment and in a configuration file."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest

from checks.keys.no_key_elsewhere import check_no_key_elsewhere, no_key_elsewhere_verdict
from harness.key_classes import load_key_classes
from harness.key_hits import KeyHit, KeySearchResult, SearchGap
from harness.keysearch import KeySearcher
from harness.outcomes import Outcome
from harness.platform import OutOfReach

from .conftest import assert_no_secret_in, run_check, run_with_fault


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
    assert verdict.message == ("The search is incomplete, 2 gap(s): searched only the first 64 MiB of "
                               "/s/logs/api.log; skipped /s/data.db (binary file).")


def test_no_key_elsewhere_fails_on_a_hit_even_when_the_search_was_partial() -> None:
    result = KeySearchResult(hits=(hit("/s/logs/api.log@12"),), files_searched=3,
                             truncated=("/s/logs/api.log",),
                             truncated_at=(("/s/logs/api.log", 64 << 20),))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("Keys found outside the HSM: votriz/api/stripe (raw) in config "
                               "/s/logs/api.log@12.")


SEARCH = load_key_classes().search
KEY = "sk_live_51Hq8ZxLkQ2mVb7RtY3nW0pAeCdFgHiJk"


def _judge(root: Path) -> tuple[KeySearchResult, object]:
    result = KeySearcher([("votriz/api/stripe", KEY.encode())], SEARCH).search_files([root], "config")
    result = KeySearchResult(**{**result.__dict__, "processes_searched": ("api[pid 1 x]",)})
    return result, no_key_elsewhere_verdict(result, ["votriz/api/stripe"],
                                            harmless_gap_kinds=SEARCH.harmless_gap_kinds)


def test_a_key_behind_a_symlink_fails(tmp_path: Path) -> None:
    # Given a configuration root whose file and directory are links to a place outside it
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "d" / "api.env").write_text(f"STRIPE_KEY={KEY}\n")
    root = tmp_path / "conf"
    root.mkdir()
    (root / "secrets").symlink_to(outside / "d")
    # When searched and judged
    _, verdict = _judge(root)
    # Then it FAILs naming the file under the link
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert verdict.message == (f"Keys found outside the HSM: votriz/api/stripe (raw) in config "
                               f"{root / 'secrets' / 'api.env'}:1.")


def test_a_dangling_link_or_fifo_without_a_hit_is_error_naming_the_gaps(tmp_path: Path) -> None:
    # Given a clean file, a dangling link, a link loop and a FIFO
    (tmp_path / "ok.toml").write_text("x = 1\n")
    (tmp_path / "gone").symlink_to("/nonexistent/key")
    (tmp_path / "loop").symlink_to("loop")
    os.mkfifo(tmp_path / "pipe")
    # When searched and judged
    result, verdict = _judge(tmp_path)
    # Then it is ERROR, counting the gaps and naming them, never PASS
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        f"The search is incomplete, 3 gap(s): could not read {tmp_path / 'gone'} (dangling link: -> "
        f"/nonexistent/key); could not read {tmp_path / 'loop'} (link loop: Too many levels of "
        f"symbolic links); could not read {tmp_path / 'pipe'} (fifo).")
    assert verdict.details["coverage"]["gaps"] == [gap.describe() for gap in result.gaps]


def test_more_than_five_gaps_are_counted_and_the_first_five_named() -> None:
    gaps = tuple(SearchGap(f"/s/{n}", "dangling link") for n in range(7))
    result = KeySearchResult(files_searched=1, processes_searched=("api[pid 1 x]",), gaps=gaps)
    verdict = no_key_elsewhere_verdict(result, ["k"])
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("The search is incomplete, 7 gap(s): could not read /s/0 "
                                      "(dangling link); ")
    assert verdict.message.endswith("could not read /s/4 (dangling link) (and 2 more).")


def test_a_socket_is_a_harmless_gap_and_the_pass_counts_files_and_links(tmp_path: Path) -> None:
    # Given a clean file reached through a link, and a socket (the policy lists it harmless)
    (tmp_path / "real.toml").write_text("x = 1\n")
    (tmp_path / "link.toml").symlink_to("real.toml")
    (tmp_path / "other.toml").write_text("y = 2\n")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "api.sock"))
    try:
        _, verdict = _judge(tmp_path)
    finally:
        server.close()
    assert "socket" in SEARCH.harmless_gap_kinds
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert verdict.message == (
        "None of 1 HSM keys (raw, base64, hex) nor any key-shaped string was found in 2 files "
        "(1 symbolic link(s) followed; 1 socket entry(ies) not read: no content to hold a key) or "
        "the environment of 1 processes.")


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


@pytest.mark.integration
@pytest.mark.slow
def test_a_key_behind_a_link_planted_in_the_running_stacks_logs_fails(clean_stack, tmp_path: Path) -> None:
    # Given, in the running stack's log directory, a link to a file outside it holding a
    # Fernet-shaped key (as a mounted Kubernetes secret would be), and then a dangling link
    logs = Path(clean_stack.state_dir) / "logs"
    outside = tmp_path / "k8s-secret"
    outside.mkdir()
    (outside / "token-key").write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    link, dangling = logs / "zz-audit-planted.log", logs / "zz-audit-dangling.log"
    try:
        link.symlink_to(outside / "token-key")
        found, secrets, evidence_dir = run_check(check_no_key_elsewhere, clean_stack.profile_path,
                                                 tmp_path / "found")
        link.unlink()
        dangling.symlink_to(outside / "gone")
        gap, _, _ = run_check(check_no_key_elsewhere, clean_stack.profile_path, tmp_path / "gap")
    finally:
        for planted in (link, dangling):
            if planted.is_symlink():
                planted.unlink()
    # Then the key behind the link FAILs the check, named under the link's path
    assert found.outcome is Outcome.FAIL, found.message
    assert f"fernet-key in log {link}@0" in found.message
    assert_no_secret_in(evidence_dir, secrets)
    # And the dangling link, with nothing found, is ERROR naming it (never PASS)
    assert gap.outcome is Outcome.ERROR, gap.message
    assert gap.message == (f"The search is incomplete, 1 gap(s): could not read {dangling} "
                           f"(dangling link: -> {outside / 'gone'}).")
