"""transit.certificate against testssl.sh on real test edges: both must reach the same verdict.

Each edge is an ``openssl s_server`` (TLS 1.3) with its own CA and leaf
(``certificate_edges.py``). On each, the harness's probe and verdict run, and Debian's
testssl.sh judges the certificate (``-S``, the test CA added with ``--add-ca``, its
expiry thresholds set to the policy's days left). PASS must coincide with testssl.sh
finding no trust, host name or expiry problem, and FAIL with it finding one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from checks.transit.certificate import certificate_verdict
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.tls import scan_tls

from .certificate_edges import HOST, VARIANTS, RunningEdge, certificate_edges

__all__ = ["certificate_edges"]

POLICY = load_policy()
# testssl.sh's findings about the promise: the chain to the anchor, the host name, the expiry.
TESTSSL_CERTIFICATE_IDS = ("cert_chain_of_trust", "cert_trust", "cert_expirationStatus")
# How many testssl.sh runs at once: each is a few hundred openssl processes on 2 shared cores.
TESTSSL_PARALLEL = 4
TESTSSL_TIMEOUT_S = 300


@dataclass(frozen=True)
class CertificateFindingsOfTestssl:
    """testssl.sh's certificate findings on one edge.

    Attributes:
        findings: ``{id: (severity, finding)}`` for the ids in TESTSSL_CERTIFICATE_IDS.
        seconds: how long the run took.
    """

    findings: dict[str, tuple[str, str]]
    seconds: float

    @property
    def problems(self) -> dict[str, tuple[str, str]]:
        """The findings testssl.sh rates worse than OK/INFO: a trust, name or expiry problem."""
        return {key: value for key, value in self.findings.items() if value[0] not in ("OK", "INFO")}


def run_testssl(binary: str, running: RunningEdge) -> CertificateFindingsOfTestssl:
    """testssl.sh's server-defaults run (which holds the certificate part) against one edge."""
    days = str(POLICY.tls.min_certificate_days_left)
    env = {**os.environ, "DAYS2WARN1": days, "DAYS2WARN2": days}
    with tempfile.TemporaryDirectory(prefix="testssl-") as tmp:
        out = Path(tmp) / "out.json"
        started = time.monotonic()
        done = subprocess.run(
            [binary, "-S", "--quiet", "--color", "0", "--warnings", "off", "--add-ca", str(running.ca_pem),
             "--ip", "127.0.0.1", "--jsonfile", str(out), f"https://{HOST}:{running.port}"],
            capture_output=True, text=True, timeout=TESTSSL_TIMEOUT_S, env=env, check=False)
        seconds = time.monotonic() - started
        if not out.is_file():
            raise AssertionError(f"testssl.sh wrote no JSON (exit {done.returncode}): {done.stderr[-500:]}")
        entries = json.loads(out.read_text("utf-8"))
    findings = {entry["id"]: (entry["severity"], entry["finding"]) for entry in entries
                if entry["id"] in TESTSSL_CERTIFICATE_IDS}
    missing = set(TESTSSL_CERTIFICATE_IDS) - set(findings)
    assert not missing, f"testssl.sh gave no {sorted(missing)} for {running.variant.name}"
    return CertificateFindingsOfTestssl(findings, round(seconds, 1))


@pytest.fixture(scope="module")
def testssl_verdicts(certificate_edges: dict[str, RunningEdge]) -> dict[str, CertificateFindingsOfTestssl]:
    """testssl.sh's certificate findings on every test edge, run a few at a time."""
    binary = shutil.which("testssl") or shutil.which("testssl.sh")
    if binary is None:
        pytest.skip("testssl.sh is not installed (./dev installs the Debian package testssl.sh)")
    with ThreadPoolExecutor(max_workers=TESTSSL_PARALLEL) as pool:
        runs = {name: pool.submit(run_testssl, binary, running) for name, running in certificate_edges.items()}
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.integration
@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
def test_certificate_verdict_agrees_with_testssl(variant: str, certificate_edges: dict[str, RunningEdge],
                                                 testssl_verdicts: dict[str, CertificateFindingsOfTestssl]) -> None:
    # Given a test edge and testssl.sh's findings on it,
    running = certificate_edges[variant]
    testssl = testssl_verdicts[variant]
    # when the harness scans it and judges the certificate,
    verdict = certificate_verdict(scan_tls(running.edge(), POLICY), POLICY)
    # then both reach the side every client reaches,
    expected = Outcome.PASS if running.variant.clients_accept else Outcome.FAIL
    assert verdict.outcome is expected, verdict.message
    assert (not testssl.problems) is running.variant.clients_accept, (
        f"testssl.sh ({testssl.seconds} s): {testssl.findings}")
    # and the message speaks plain words: no library text, no object identifiers.
    assert "2.5.29" not in verdict.message and "OID" not in verdict.message, verdict.message
    assert "extension" not in (verdict.details["validation_error"] or ""), verdict.details


@pytest.mark.integration
def test_each_testssl_run_is_timed(testssl_verdicts: dict[str, CertificateFindingsOfTestssl],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    seconds = {name: run.seconds for name, run in testssl_verdicts.items()}
    with capsys.disabled():
        print(f"\ntestssl.sh -S seconds per edge ({TESTSSL_PARALLEL} at a time): {seconds}")
    assert all(0 < took < TESTSSL_TIMEOUT_S for took in seconds.values()), seconds


@pytest.mark.integration
def test_leaf_without_authority_key_identifier_passes_with_the_finding_recorded(
        certificate_edges: dict[str, RunningEdge]) -> None:
    # Given an edge whose leaf has no Authority Key Identifier (every client accepts it),
    verdict = certificate_verdict(scan_tls(certificate_edges["no-aki"].edge(), POLICY), POLICY)
    # then the check passes, says what it recorded, and the evidence holds the finding in plain words;
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "Recorded, not judged" in verdict.message and "Authority Key Identifier" in verdict.message
    rules = [finding["rule"] for finding in verdict.details["lint_findings_not_judged"]]
    assert "leaf-no-authority-key-identifier" in rules
    # the strict verifier's refusal is kept for the record only.
    assert verdict.details["strict_verifier_accepts"] is False
    assert verdict.details["validated_by"].startswith("OpenSSL")
