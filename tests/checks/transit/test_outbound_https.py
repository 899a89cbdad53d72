"""transit.outbound_https on hand-made wire captures, then on the reference service (start-up faults)."""

from __future__ import annotations

from dataclasses import replace
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
# Used for every call, the control calls too, as a store is.
DATABASE = flow("127.0.0.1:5432", FlowStart("other", note="PostgreSQL startup message (no TLS)"), 9.5, 12.9,
                began=False)
REDIS_TLS = flow("10.0.0.3:6380", FlowStart("tls-client-hello", server_name="redis"), 9.4, 12.8)


# A control call (no upstream) before each step.
CONTROLS = (ExerciseStep("GET /mfa", 200, "", 9.6, 9.8), ExerciseStep("GET /mfa", 200, "", 11.5, 11.7))


def exercise(*flows: WireFlow, removed: bool = True, dropped: int = 0,
             names: frozenset[str] | None = None) -> OutboundExercise:
    wire = WireCapture(API, 9.0, 14.6, flows, 120, dropped, 30)
    return OutboundExercise(STEPS, wire, 14.5, names, CONTROLS, canary_removed=removed,
                            cleanup_error=None if removed else "DELETE /account: 500")


def _bursts(server: str, start: FlowStart, *bursts: tuple[float, float]) -> WireFlow:
    return WireFlow("127.0.0.1:40001", server, True, start, bursts[0][0], bursts[-1][1], 900, (), bursts)


UPSTREAM_HELLO = FlowStart("tls-client-hello", server_name="api.resend.com")


def test_both_calls_over_tls_pass_naming_the_flows() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, DATABASE))
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert ("the LLM (Anthropic) call (POST /brands/1/captions, answered 201) over 127.0.0.1:9443 "
            "(ClientHello for 'fakes')") in verdict.message
    assert "No plaintext HTTP request among the 3 client flows" in verdict.message


def test_one_reused_tls_flow_can_carry_both_calls() -> None:
    # Kept alive from the first call to the second, silent during the control call between them
    both = _bursts("127.0.0.1:9443", FlowStart("tls-client-hello"), (10.2, 10.3), (12.4, 12.5))
    verdict = outbound_https_verdict(exercise(both, DATABASE))
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
    assert "No TLS flow of the API carried the Resend call (POST /recovery/request" in verdict.message


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
    assert ("neither TLS, HTTP nor a store's protocol: 10.0.0.9:25 (50 bytes, neither a TLS record nor an HTTP "
            "request) during the Resend call") in verdict.message




@pytest.mark.parametrize("flows", [
    # A welcome mail at signup (9.3) on a kept-alive flow that also carries the recovery mail
    (_bursts("203.0.113.7:443", UPSTREAM_HELLO, (9.3, 9.35), (12.3, 12.35)),),
    # ... or the same peer again on a new flow
    (_bursts("203.0.113.7:443", UPSTREAM_HELLO, (9.3, 9.35)), _bursts("203.0.113.7:443", UPSTREAM_HELLO,
                                                                      (12.3, 12.35))),
], ids=["kept-alive", "new-flow"])
def test_an_upstream_also_called_at_signup_still_carries_its_call(flows: tuple[WireFlow, ...]) -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, DATABASE, *flows))
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "the Resend call (POST /recovery/request, answered 202) over 203.0.113.7:443" in verdict.message


def test_a_plaintext_relay_also_used_at_signup_is_no_store_and_a_store_protocol_is_no_call() -> None:
    # Given an SMTP relay used at signup and again during the recovery call, a Redis over TLS first
    # used during that call, and a Redis in RESP used only for captions
    smtp = _bursts("10.0.0.9:25", FlowStart("other", note="50 bytes, neither a TLS record nor an HTTP request"),
                   (9.3, 9.35), (12.3, 12.35))
    redis_tls = _bursts("10.0.0.4:6380", FlowStart("tls-client-hello", server_name="redis"), (12.25, 12.3))
    resp = _bursts("10.0.0.5:6379", FlowStart("other", note="Redis protocol (RESP)"), (10.25, 10.3))
    # Then the relay leaves the Resend call unexplained (ERROR), while the RESP store alone does not
    assert outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, DATABASE, smtp, redis_tls)).outcome is Outcome.ERROR
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, DATABASE, resp))
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert ("(flows to 1 peer of its stores, sent to for GET /mfa, which makes no upstream call, or named "
            "by the profile, were not counted: 127.0.0.1:5432)") in verdict.message


def test_a_store_the_profile_names_carries_no_call_though_touched_only_during_one() -> None:
    # Given a Redis over TLS the API touches only while it makes the Resend call (not for GET /mfa),
    # and no flow of the call itself in the namespace (a worker elsewhere sends the mail)
    redis_tls = _bursts("10.0.0.3:6380", FlowStart("tls-client-hello", server_name="redis"), (12.05, 12.06))
    plain = exercise(LLM_TLS, DATABASE, redis_tls)
    named = replace(plain, stores=frozenset({"10.0.0.3:6380", "redis"}))
    # Then, the profile naming that Redis, it carries no call: ERROR, not PASS over it
    verdict = outbound_https_verdict(named)
    assert verdict.outcome is Outcome.ERROR and "carried the Resend call" in verdict.message
    # (Not named, it cannot be told from an upstream: the limit of what the wire shows.)
    assert outbound_https_verdict(plain).outcome is Outcome.PASS


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
