"""transit.security_headers on hand-made HTTPS samples, then on the reference service."""

from __future__ import annotations

from checks.transit.security_headers import HEADERS_BASIS, security_headers_verdict
from harness.outcomes import Outcome

from .conftest import GOOD, POLICY, https, integration_tests, replaced, without


def test_security_headers_pass_and_say_the_page_lists_none() -> None:
    verdict = security_headers_verdict(https(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert verdict.details["basis"] == HEADERS_BASIS
    assert "lists no headers" in verdict.details["basis"]
    assert "page itself lists no headers" in verdict.message


def test_security_headers_missing_csp_and_frame_protection_and_banner_fail() -> None:
    headers = (*without("content-security-policy", "x-frame-options", "server"),
               ("server", "nginx/1.22.1"))
    verdict = security_headers_verdict(https(headers), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "lacks content-security-policy" in verdict.message
    assert "no frame protection" in verdict.message
    assert "version banner (Server: nginx/1.22.1)" in verdict.message
    assert "lists no headers" in verdict.details["basis"]


def test_csp_frame_ancestors_alone_is_frame_protection() -> None:
    assert security_headers_verdict(https(without("x-frame-options")), POLICY).outcome is Outcome.PASS


def test_x_frame_options_alone_is_frame_protection_but_allow_from_is_not() -> None:
    no_ancestors = replaced("content-security-policy", "default-src 'self'")
    assert security_headers_verdict(https(no_ancestors), POLICY).outcome is Outcome.PASS
    allow_from = (*without("x-frame-options", base=no_ancestors), ("x-frame-options", "ALLOW-FROM x"))
    verdict = security_headers_verdict(https(allow_from), POLICY)
    assert verdict.outcome is Outcome.FAIL and "no frame protection" in verdict.message


def test_x_powered_by_is_a_banner() -> None:
    verdict = security_headers_verdict(https((*GOOD, ("x-powered-by", "Starlette"))), POLICY)
    assert verdict.outcome is Outcome.FAIL and "x-powered-by: Starlette" in verdict.message


def test_empty_required_header_counts_as_missing() -> None:
    verdict = security_headers_verdict(https(replaced("referrer-policy", " "), only="/api/v1/brands"), POLICY)
    assert verdict.outcome is Outcome.FAIL and "/api/v1/brands (401) lacks referrer-policy" in verdict.message


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.security_headers", {
    "security-headers-missing": "lacks content-security-policy",
})
