"""transit.http_redirect_only on hand-made plain-HTTP samples, then on the reference service."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.transit.http_redirect_only import check_http_redirect_only, http_redirect_verdict
from harness.outcomes import Outcome
from harness.probes.http import EdgeSamples, HttpSample

from .conftest import EDGE, PATHS, conclude, integration_tests, profile


def plain(path: str, status: int = 301, location: str | None = "auto", content_type: str = "text/html",
          body_bytes: int = 162) -> HttpSample:
    if location == "auto":
        location = f"https://votriz.test:8443{path}"
    headers = (("location", location),) if location else ()
    return HttpSample("http", path, f"http://votriz.test:8080{path}", status, headers, body_bytes,
                      content_type)


def http(*samples: HttpSample) -> EdgeSamples:
    return EdgeSamples("http", "votriz.test", 8080, samples)


def test_permanent_redirects_to_the_same_https_url_pass() -> None:
    verdict = http_redirect_verdict(http(*(plain(p) for p, _ in PATHS), plain("/x?a=1", 308)), EDGE)
    assert verdict.outcome is Outcome.PASS and "301/308 redirect" in verdict.message


def test_serving_json_over_http_fails_naming_the_url() -> None:
    verdict = http_redirect_verdict(http(plain("/"), plain("/healthz", 200, None, "application/json", 15)),
                                    EDGE)
    assert verdict.outcome is Outcome.FAIL
    assert "http://votriz.test:8080/healthz answered 200 (application/json, 15 bytes)" in verdict.message
    assert "https://votriz.test:8443/healthz" in verdict.message


@pytest.mark.parametrize(("sample", "fragment"), [
    (plain("/", 302), "answered 302"),
    (plain("/", location="http://votriz.test:8443/"), "redirects to http://votriz.test:8443/"),
    (plain("/", location="https://evil.test:8443/"), "not to https://votriz.test:8443/"),
    (plain("/", location="https://votriz.test:8443/elsewhere"), "not to"),
    (plain("/", location="https://votriz.test/"), "not to"),  # port 443, not the edge's 8443
    (plain("/", location=None), "without a Location header"),
    (plain("/", body_bytes=4096), "tiny stock page"),
    (plain("/", content_type="application/json", body_bytes=20), "tiny stock page"),
])
def test_redirect_problems_fail(sample: HttpSample, fragment: str) -> None:
    verdict = http_redirect_verdict(http(sample), EDGE)
    assert verdict.outcome is Outcome.FAIL and fragment in verdict.message


def test_default_port_redirect_without_explicit_port_passes() -> None:
    edge = EDGE.model_copy(update={"https_port": 443})
    verdict = http_redirect_verdict(http(plain("/", location="https://votriz.test/")), edge)
    assert verdict.outcome is Outcome.PASS


def test_no_http_port_makes_the_redirect_check_manual(tmp_path: Path) -> None:
    # Given a profile that names no plaintext port at the edge
    verdict = conclude(check_http_redirect_only, tmp_path,
                       profile=profile(edge={"host": "votriz.test", "http_port": None}))
    # Then nothing was observed: a human confirms port 80, never NOT_APPLICABLE or PASS
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "The profile declares no plaintext port at the edge (edge.http_port), so no plain-HTTP "
        "answer was observed. By hand: confirm port 80 of votriz.test is closed or redirects every "
        "path (301/308) to https://votriz.test/ on the same path, e.g. with curl -sI "
        "http://votriz.test/.")


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.http_redirect_only", {
    "http-serves-content": "instead of a 301/308 redirect",
})
