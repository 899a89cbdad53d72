"""The checks whose evidence the report draws in its own way attach their kind's model: the
file is what the check's details were before the kinds existed, plus ``kind``, and the report
draws it with that kind's view."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from pydantic import BaseModel

from checks.at_rest.password_hashes import password_hashes_verdict
from checks.transit.hsts import hsts_verdict
from checks.transit.http_redirect_only import http_redirect_verdict
from checks.transit.security_headers import security_headers_verdict
from checks.transit.tls_versions import tls_versions_verdict
from harness.column_scans import scan_hash_cells
from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import (
    BcryptHistogramEvidence,
    HeaderTranscriptEvidence,
    TlsVersionsEvidence,
)
from harness.outcomes import Verdict
from harness.policy import load_policy
from harness.probes.http import EdgeSamples, HttpSample
from harness.probes.passwords import PasswordObservation
from harness.probes.tls import TlsScan, TlsVersionProbe
from harness.profile import Edge
from harness.redaction import KnownSecrets
from harness.report.evidence_views import view_evidence
from harness.report.layout import EvidenceFile

POLICY = load_policy()
EDGE = Edge(host="votriz.test", address="127.0.0.1", https_port=8443, http_port=8080,
            trust_anchor=Path("/nonexistent/ca.pem"))
H12 = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$04$", "$12$")
GOOD = (("strict-transport-security", "max-age=63072000; includeSubDomains"),
        ("content-security-policy", "default-src 'self'; frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"),
        ("permissions-policy", "camera=()"), ("x-frame-options", "DENY"), ("server", "nginx"))


def _scan() -> TlsScan:
    accepted = {"TLSv1.2": ("ECDHE-RSA-AES128-GCM-SHA256",),
                "TLSv1.3": ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")}
    probes = tuple(TlsVersionProbe(v, True, v in accepted, accepted.get(v, ()))  # type: ignore[arg-type]
                   for v in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"))
    return TlsScan(host="votriz.test", address="127.0.0.1", port=8443, versions=probes,
                   certificate=None, certificate_error=None, hsts=None, http_headers_error=None,
                   duration_s=0.4, sslyze_version="6.3.1")


def _https(root_headers: tuple[tuple[str, str], ...]) -> EdgeSamples:
    return EdgeSamples("https", "votriz.test", 8443, tuple(
        HttpSample("https", path, f"https://votriz.test:8443{path}", status,
                   root_headers if path == "/" else GOOD, 20, "application/json")
        for path, status in (("/", 200), ("/healthz", 200), ("/does-not-exist", 404))))


def _redirects() -> EdgeSamples:
    return EdgeSamples("http", "votriz.test", 8080, (
        HttpSample("http", "/", "http://votriz.test:8080/", 301,
                   (("location", "https://votriz.test:8443/"),), 169, "text/html", "<html>301</html>"),
        HttpSample("http", "/api", "http://votriz.test:8080/api", 200, (), 20, "application/json",
                   '{"ok": true}')))


CASES: dict[str, tuple[type[BaseModel], str, Callable[[], Verdict]]] = {
    "transit.tls_versions": (TlsVersionsEvidence, "tls_versions",
                             lambda: tls_versions_verdict(_scan(), POLICY)),
    "transit.hsts": (HeaderTranscriptEvidence, "header_transcript",
                     lambda: hsts_verdict(_https(GOOD[1:]), POLICY)),
    "transit.security_headers": (HeaderTranscriptEvidence, "header_transcript",
                                 lambda: security_headers_verdict(_https(GOOD), POLICY)),
    "transit.http_redirect_only": (HeaderTranscriptEvidence, "header_transcript",
                                   lambda: http_redirect_verdict(_redirects(), EDGE)),
    "at_rest.password_hashes": (BcryptHistogramEvidence, "bcrypt_histogram",
                                lambda: password_hashes_verdict(PasswordObservation(
                                    scan_hash_cells(enumerate([H12, "hunter22", None], 1),
                                                    "users.password_hash", 12), "match", 12), POLICY)),
}


def _written(tmp_path: Path, name: str, data: Any) -> Any:
    recorder = EvidenceRecorder("c", tmp_path / name, KnownSecrets())
    return json.loads(recorder.attach("e", data).read_text(encoding="utf-8"))


@pytest.mark.parametrize("check_id", list(CASES))
def test_the_evidence_file_only_gains_its_kind(tmp_path: Path, check_id: str) -> None:
    model, kind, verdict_of = CASES[check_id]
    details = verdict_of().details
    # Given the file the check wrote from its details as a dict, and the one it writes now
    before = _written(tmp_path, "dict", details)
    after = _written(tmp_path, "model", model.model_validate(details))
    # Then the new file is the old one plus its kind, and the report draws it with that kind
    assert after == {**before, "kind": kind}
    view = view_evidence(EvidenceFile("evidence/c/e.json", "e.json", 10, "json", data=after))
    assert view.shape == kind and not view.note


def test_every_check_that_draws_a_kind_attaches_its_model() -> None:
    root = Path(__file__).resolve().parents[2] / "checks"
    for check_id, (model, _, _) in CASES.items():
        area, name = check_id.split(".")
        source = (root / area / f"{name}.py").read_text(encoding="utf-8")
        assert f"{model.__name__}.model_validate(verdict.details)" in source, check_id
