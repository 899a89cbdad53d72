"""transit.origin_not_plaintext on hand-made listener surveys, then on the reference service."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.transit.origin_not_plaintext import check_origin_not_plaintext, origin_not_plaintext_verdict
from harness.outcomes import Outcome
from harness.probes.http import PlainHttpAnswer
from harness.probes.listeners import OriginSurvey, SkipReason

from .conftest import conclude, integration_tests, listener, profile


def test_no_listener_serving_plain_http_passes() -> None:
    survey = OriginSurvey(("nginx", "postgres", "api"), (
        listener(8443, PlainHttpAnswer("127.0.0.1", 8443, True, True, 400,
                                       first_line="HTTP/1.1 400 Bad Request", speaks_tls=True),
                 process="nginx"),
        listener(8080, None, "the edge's plaintext port, judged by transit.http_redirect_only",
                 process="nginx", reason=SkipReason.JUDGED_ELSEWHERE),
        listener(5432, PlainHttpAnswer("127.0.0.1", 5432, True, False, error="closed without answering"),
                 process="postgres"),
    ))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.PASS
    assert "None of the 2 TCP listeners" in verdict.message
    judgements = [row["judgement"] for row in verdict.details["listeners"]]
    assert judgements[0].startswith("a TLS listener") and judgements[1].startswith("not probed")


def test_api_answering_plain_http_fails_naming_process_and_port() -> None:
    survey = OriginSurvey(("api",), (
        listener(9001, PlainHttpAnswer("127.0.0.1", 9001, True, True, 404,
                                       first_line="HTTP/1.1 404 Not Found", speaks_tls=False)),
    ))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.FAIL
    assert "api (gunicorn, pid 4242) on 127.0.0.1:9001" in verdict.message
    assert "HTTP/1.1 404 Not Found" in verdict.message


def test_a_tls_listener_serving_200_to_plain_http_still_fails() -> None:
    survey = OriginSurvey(("api",), (
        listener(9443, PlainHttpAnswer("127.0.0.1", 9443, True, True, 200, first_line="HTTP/1.1 200 OK",
                                       speaks_tls=True)),))
    assert origin_not_plaintext_verdict(survey).outcome is Outcome.FAIL


def test_plain_redirect_to_https_is_fine() -> None:
    survey = OriginSurvey(("nginx",), (
        listener(8081, PlainHttpAnswer("127.0.0.1", 8081, True, True, 308, "https://votriz.test/",
                                       "HTTP/1.1 308 Permanent Redirect")),))
    assert origin_not_plaintext_verdict(survey).outcome is Outcome.PASS


def test_unprobed_non_loopback_listener_is_error() -> None:
    survey = OriginSurvey(("api",), (listener(9001, None, "bound to 10.0.0.5, not a loopback address; "
                                                          "the harness only targets loopback",
                                              address="10.0.0.5", reason=SkipReason.NOT_LOOPBACK),))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.ERROR and "10.0.0.5" in verdict.message


REDIS_ANSWER = PlainHttpAnswer("127.0.0.1", 6379, True, False, first_line="-ERR unknown command 'GET'")


@pytest.mark.parametrize("answer", [
    PlainHttpAnswer("127.0.0.1", 9001, True, False, error="no answer within 2s"),
    PlainHttpAnswer("127.0.0.1", 9001, False, False, error="Connection refused"),
])
def test_a_listener_that_gave_no_answer_is_unverified_not_fine(answer: PlainHttpAnswer) -> None:
    # Given a listener whose probe timed out or could not connect, next to one that answered
    survey = OriginSurvey(("api", "redis"), (listener(9001, answer),
                                             listener(6379, REDIS_ANSWER, process="redis")))
    verdict = origin_not_plaintext_verdict(survey)
    # Then it is unverified: ERROR naming it, never "does not speak plain HTTP"
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Some listeners could not be verified: api (gunicorn, pid 4242) on "
                               f"127.0.0.1:9001: {answer.error}.")
    # And another listener serving plain HTTP still fails the check
    served = PlainHttpAnswer("127.0.0.1", 9002, True, True, 200, first_line="HTTP/1.1 200 OK")
    failing = origin_not_plaintext_verdict(OriginSurvey(("api",), (listener(9001, answer),
                                                                   listener(9002, served))))
    assert failing.outcome is Outcome.FAIL
    assert failing.message == ("The origin is reachable without TLS: api (gunicorn, pid 4242) on "
                               "127.0.0.1:9002 answers plain HTTP with 'HTTP/1.1 200 OK'.")


def test_no_listener_found_is_error() -> None:
    verdict = origin_not_plaintext_verdict(OriginSurvey(("api",), ()))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == "No TCP listener was found for api, so nothing was probed."


def test_unreadable_proc_entries_are_named_and_make_it_error() -> None:
    survey = OriginSurvey(("api", "redis"), (listener(6379, REDIS_ANSWER, process="redis"),),
                          ("/proc/4243/net/tcp: Permission denied",))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Some of the processes' sockets could not be read, so a listener may "
                               "have been missed: /proc/4243/net/tcp: Permission denied.")


def test_a_skipped_listener_without_a_typed_reason_is_unverified() -> None:
    survey = OriginSurvey(("api",), (listener(9001, None, "judged elsewhere, says the text"),))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.ERROR
    assert "127.0.0.1:9001: judged elsewhere, says the text" in verdict.message


def test_proc_entries_that_cannot_be_read_are_surfaced_not_skipped(tmp_path: Path) -> None:
    # Given a fake /proc where pid 77 holds a socket but its tcp table cannot be read
    from harness.probes.listeners import scan_listeners
    from harness.profile import Process

    proc = tmp_path / "proc"
    (proc / "77" / "fd").mkdir(parents=True)
    (proc / "77" / "fd" / "3").symlink_to("socket:[4321]")
    (proc / "77" / "net" / "tcp").mkdir(parents=True)  # a directory: reading it fails
    (proc / "77" / "comm").write_text("gunicorn\n")
    pid_file = tmp_path / "api.pid"
    pid_file.write_text("77\n")
    # When its listeners are read
    scan = scan_listeners([Process(name="api", pid_file=pid_file, include_children=False)], proc)
    # Then nothing is found, and what could not be read is said
    assert scan.sockets == ()
    assert scan.unreadable == ("/proc/77/net/tcp: Is a directory",)


@pytest.mark.parametrize("backend", ["docker", "remote"])
def test_origin_listeners_are_manual_when_nothing_says_where_they_are(backend: str, tmp_path: Path) -> None:
    # Given a docker profile without its [docker] project, or a remote host: the promise
    # still applies, the harness just cannot see the listeners -> a human attests, never N/A
    verdict = conclude(check_origin_not_plaintext, tmp_path, profile=profile(backend=backend))
    assert verdict.outcome is Outcome.MANUAL
    assert f"backend {backend!r}" in verdict.message and "ss -ltnp" in verdict.message


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.origin_not_plaintext", {
    "api-plaintext-exposed": "answers plain HTTP",
})


@pytest.mark.integration
def test_a_profile_without_capture_does_not_take_the_reference_s_fakes_for_the_service(
        clean_stack, tmp_path: Path) -> None:
    import tomllib

    import tomli_w

    from harness.policy import load_policy
    from harness.profile import load_profile

    from .conftest import run_check

    # Given the clean local stack audited through its profile without [capture], as an operator's
    # profile has it (the fakes, which stand in for the internet, have a plaintext port of their own)
    data = tomllib.loads(clean_stack.profile_path.read_text(encoding="utf-8"))
    del data["capture"]
    copy = tmp_path / "target-without-capture.toml"
    copy.write_text(tomli_w.dumps(data), encoding="utf-8")
    # When the origin's listeners are judged
    verdict, _ = run_check("transit.origin_not_plaintext", load_profile(copy), load_policy(), tmp_path)
    # Then only the service's processes are surveyed: nothing answers plain HTTP
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "fakes" not in verdict.message
