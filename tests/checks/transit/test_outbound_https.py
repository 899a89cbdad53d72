"""transit.outbound_https on hand-made wire captures, then on the reference service (start-up faults)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.transit.outbound_https import check_outbound_https, outbound_https_verdict
from harness.outcomes import Outcome
from harness.probes.flow_start import FlowStart
from harness.probes.outbound import ExerciseStep, OutboundExercise
from harness.probes.wire import ApiProcesses, WireCapture, WireFlow
from harness.redaction import KnownSecrets

from .conftest import conclude, integration_tests, profile

# The caption call from t=10 to t=11, the recovery call from t=12 to t=13; the window ends at 14.5.
STEPS = (ExerciseStep("POST /brands/1/captions", 201, "LLM (Anthropic)", 10.0, 11.0),
         ExerciseStep("POST /recovery/request", 202, "Resend", 12.0, 13.0))
API = ApiProcesses("[local] process api (pid 42)", (42,), Path("/proc/42/ns/net"))


def flow(server: str, start: FlowStart, first: float, last: float, *, began: bool = True,
         requests: tuple[str, ...] = ()) -> WireFlow:
    return WireFlow("127.0.0.1:40000", server, began, start, first, last, 600, requests)


LLM_TLS = flow("127.0.0.1:9443", FlowStart("tls-client-hello", server_name="fakes"), 10.2, 10.4)
MAIL_TLS = flow("127.0.0.1:9444", FlowStart("tls-client-hello", server_name="fakes"), 12.2, 12.4)
# Used since signup (before the first call), as a store is.
DATABASE = flow("127.0.0.1:5432", FlowStart("other", note="PostgreSQL startup message (no TLS)"), 9.5, 12.9,
                began=False)
REDIS_TLS = flow("10.0.0.3:6380", FlowStart("tls-client-hello", server_name="redis"), 9.4, 12.8)


def exercise(*flows: WireFlow, removed: bool = True, dropped: int = 0,
             names: frozenset[str] | None = None) -> OutboundExercise:
    wire = WireCapture(API, 9.0, 14.6, flows, 120, dropped, 30)
    return OutboundExercise(STEPS, wire, 14.5, names, canary_removed=removed,
                            cleanup_error=None if removed else "DELETE /account: 500")


def test_both_calls_over_tls_pass_naming_the_flows() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, DATABASE))
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert ("the LLM (Anthropic) call (POST /brands/1/captions, answered 201) over 127.0.0.1:9443 "
            "(ClientHello for 'fakes')") in verdict.message
    assert "No plaintext HTTP request among the 3 client flows" in verdict.message


def test_one_reused_tls_flow_can_carry_both_calls() -> None:
    both = flow("127.0.0.1:9443", FlowStart("tls-client-hello"), 10.2, 12.5)
    verdict = outbound_https_verdict(exercise(both))
    assert verdict.outcome is Outcome.PASS and verdict.message.count("ClientHello without a server name") == 2


@pytest.mark.parametrize(("plain", "said"), [
    (flow("127.0.0.1:9080", FlowStart("http-request", request="POST /anthropic/v1/messages"), 10.2, 10.3),
     "POST /anthropic/v1/messages to 127.0.0.1:9080 in plaintext"),
    (flow("127.0.0.1:9080", FlowStart("tls-records"), 12.2, 12.3, began=False,
          requests=("POST /resend/emails",)), "POST /resend/emails to 127.0.0.1:9080 in plaintext"),
])
def test_a_plaintext_request_fails_naming_it(plain: WireFlow, said: str) -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, plain))
    assert verdict.outcome is Outcome.FAIL and said in verdict.message, verdict.message


def test_a_plaintext_request_outside_the_steps_fails_too() -> None:
    early = flow("127.0.0.1:9080", FlowStart("http-request", request="GET /platforms/tiktok/me"), 9.5, 9.6)
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, early))
    assert verdict.outcome is Outcome.FAIL and "GET /platforms/tiktok/me" in verdict.message


def test_a_client_hello_for_another_name_fails_when_names_are_known() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, names=frozenset({"api.resend.com"})))
    assert verdict.outcome is Outcome.FAIL
    assert "127.0.0.1:9443 asked for 'fakes'" in verdict.message


def test_a_call_without_a_tls_flow_is_error() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, DATABASE))
    assert verdict.outcome is Outcome.ERROR
    assert ("No TLS flow of the API to a peer it had not used before the calls carried the Resend call "
            "(POST /recovery/request") in verdict.message


def test_a_tls_store_used_before_the_calls_carries_no_call() -> None:
    # Given a Redis over TLS the API uses on every request (since signup), and a mail relay
    # reached in plaintext SMTP (neither TLS nor HTTP) during the recovery call, no names known
    smtp = flow("10.0.0.9:25", FlowStart("other", note="50 bytes, neither a TLS record nor an HTTP request"),
                12.2, 12.4)
    for flows in ((LLM_TLS, REDIS_TLS, smtp), (LLM_TLS, REDIS_TLS)):
        verdict = outbound_https_verdict(exercise(*flows))
        # Then the Redis flow is not the Resend call's transport: nothing showed it was TLS
        assert verdict.outcome is Outcome.ERROR, verdict.message
        assert "carried the Resend call" in verdict.message
        assert "were not counted: 10.0.0.3:6380" in verdict.message
        assert verdict.details["infrastructure_peers"] == ["10.0.0.3:6380"]


def test_a_flow_neither_tls_nor_http_to_a_new_peer_during_a_call_is_error() -> None:
    smtp = flow("10.0.0.9:25", FlowStart("other", note="50 bytes, neither a TLS record nor an HTTP request"),
                12.2, 12.4)
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, DATABASE, smtp))
    assert verdict.outcome is Outcome.ERROR, verdict.message
    assert ("neither TLS nor HTTP to peers it had not used before: 10.0.0.9:25 (50 bytes, neither a TLS "
            "record nor an HTTP request) during the Resend call") in verdict.message


def test_dropped_packets_are_error_not_pass() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, dropped=3))
    assert verdict.outcome is Outcome.ERROR and "lost 3 packets" in verdict.message


def test_canary_left_behind_is_said() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, removed=False))
    assert verdict.outcome is Outcome.PASS
    assert "could not be removed: DELETE /account: 500" in verdict.message


def test_outbound_on_a_remote_target_is_manual_with_what_to_attest(tmp_path: Path) -> None:
    verdict = conclude(check_outbound_https, tmp_path, profile=profile(api={}, backend="remote"),
                       known_secrets=KnownSecrets())
    assert verdict.outcome is Outcome.MANUAL
    assert "The API's outbound flows cannot be observed: backend 'remote'" in verdict.message
    assert "Attest that the API calls the LLM provider (Anthropic) and Resend only over https://" \
        in verdict.message


def test_outbound_without_an_api_process_is_manual(tmp_path: Path) -> None:
    local = {"processes": [{"name": "nginx", "pid_file": str(tmp_path / "nginx.pid")}]}
    verdict = conclude(check_outbound_https, tmp_path, profile=profile(api={}, local=local),
                       known_secrets=KnownSecrets())
    assert verdict.outcome is Outcome.MANUAL and "names no process 'api'" in verdict.message


def test_outbound_without_canaries_is_manual(tmp_path: Path) -> None:
    verdict = conclude(check_outbound_https, tmp_path, known_secrets=KnownSecrets(),
                       profile=profile(api={"canaries": False}))
    assert verdict.outcome is Outcome.MANUAL and "api.canaries" in verdict.message


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.outbound_https", {
    "llm-plaintext": "POST /anthropic/v1/messages to 127.0.0.1:",
    "resend-plaintext": "POST /resend/emails to 127.0.0.1:",
})
