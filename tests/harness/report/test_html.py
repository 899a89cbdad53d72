"""report.html rendered from hand-made runs: verdict first, claims in the page's order,
readable evidence, nothing loaded from anywhere, nothing unescaped."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

from harness.claims import load_catalogue
from harness.outcomes import Outcome
from harness.redaction import KnownSecrets
from harness.report.calibration import Calibration, DetectionRow
from harness.report.diff import diff_dirs
from harness.report.html import OUTCOME_STYLES, write_report
from harness.report.layout import CALIBRATION_JSON, load_results


def _render(report_dir: Path, **kwargs: object) -> str:
    return write_report(report_dir, now=dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC), **kwargs).read_text()


def test_the_first_screen_gives_the_verdict_counts_target_date_tool_and_policy(fault_run: Path) -> None:
    html = _render(fault_run)
    first_screen = html[: html.index('id="glance"')]

    assert "Promise broken" in first_screen and "Gate exit code 1" in first_screen
    assert "7 of 36 promises broken (5 checks FAILED)" in first_screen
    # The tiles count promises, labelled as promises ... (the hand-made run gives every check of
    # checks/ a result, so the counts are taken from it, not written here)
    run = load_results(fault_run)
    promises = Counter(claim.outcome for claim in run.claims)
    assert (promises[Outcome.FAIL], promises[Outcome.ERROR], promises[None]) == (7, 1, 0)
    for outcome, words in ((Outcome.PASS, "promises kept"), (Outcome.FAIL, "promises broken"),
                           (Outcome.ERROR, "promises not verifiable"),
                           (Outcome.NOT_APPLICABLE, "promises that do not apply"),
                           (Outcome.MANUAL, "promises needing a human attestation"),
                           (Outcome.WAIVED, "promises under a waiver")):
        label = OUTCOME_STYLES[outcome].label
        assert re.search(rf'<span class="n">{promises[outcome]}</span><span class="badge [a-z]+"><span class="sym" '
                         rf'aria-hidden="true">[^<]+</span>{re.escape(label)}</span> '
                         rf'<span class="muted">{words}</span>', first_screen), label
    assert "NOT RUN" not in first_screen and "All 36 promises of the page were judged" in first_screen
    # ... and the checks have their own, labelled line.
    checks = Counter(result.outcome for result in run.results)
    listed = ", ".join(f"{n} {OUTCOME_STYLES[o].label}" for o in Outcome if (n := checks[o]))
    assert checks[Outcome.FAIL] == 5
    assert re.search(rf"<strong>Checks</strong> \(counted apart from promises[^)]*\): {len(run.results)} "
                     rf"results: {re.escape(listed)}\.", first_screen)
    # The promises still waiting for an attestation are counted in the summary and named, with
    # what a human must attest, under scope and limits.
    assert "5 promises need a human attestation that no machine can give and have none" in first_screen
    for claim_id in ("TRANSIT-CLOUDFLARE-EDGE", "ORG-SECURITY-REVIEWS", "REST-DB-ENCRYPTED-VOLUMES"):
        assert f'<a href="#claim-{claim_id}">' in first_screen
    assert "votriz-reference-local" in first_screen and "https://votriz.test:8443" in first_screen
    assert "the bundled reference service" in first_screen
    assert "2026-11-30 21:00:00 UTC" in first_screen
    assert "votriz-audit 0.1.0" in first_screen
    assert "votriz-default version 2026.11" in first_screen


def test_a_clean_run_says_the_gate_passed(clean_run: Path) -> None:
    html = _render(clean_run)

    assert "Gate passed" in html and "Promise broken" not in html


def test_claims_come_in_the_page_order_with_their_quoted_promise(fault_run: Path) -> None:
    html = _render(fault_run)
    catalogue = load_catalogue()

    positions = [html.index(f'id="claim-{claim.id}"') for claim in catalogue.claim]
    assert positions == sorted(positions)
    assert "“Keys are never stored in source code, configuration files, or environment variables on disk.”" in html


def test_outcomes_are_never_colour_alone(fault_run: Path) -> None:
    html = _render(fault_run)

    # Every badge carries its outcome's name and a symbol as text.
    badges = re.findall(r'<span class="badge ([a-z]+)"[^>]*><span class="sym" aria-hidden="true">([^<]+)</span>'
                        r'([^<]+)</span>', html)
    assert badges
    names = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "na": "N/A", "manual": "MANUAL",
             "waived": "WAIVED", "notrun": "NOT RUN"}
    for css, symbol, label in badges:
        assert names[css] == label and symbol.strip()


def test_evidence_of_known_shapes_is_drawn(fault_run: Path) -> None:
    html = _render(fault_run)

    assert "Protocol versions tried against the edge" in html
    assert '<td class="flag">✗ accepted, not allowed</td>' in html
    assert "GET https://votriz.test:8443/api/health → 200" in html
    assert "content-security-policy: (absent) ✗ required" in html
    assert "⚠ marks an attribute that weakens custody" in html and "⚠ extractable" in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    assert "▼ rotation-start" in html and "p50 solid, p99 dashed" in html
    assert "cost 10" in html and "3 ✗" in html and "Policy: cost 12" in html


def test_evidence_is_shown_once_and_referred_to_from_later_claims(fault_run: Path) -> None:
    html = _render(fault_run)

    assert html.count("evidence/keys.hsm_custody/hsm-objects.json") == 1
    assert 'Evidence shown under <a href="#check-keys.hsm_custody-' in html


def test_awkward_evidence_is_described_not_fatal(fault_run: Path) -> None:
    html = _render(fault_run)

    assert "Evidence file not shown: the file is missing." in html
    # A file that is not the JSON it claims is linked and described, its raw text left in the file.
    assert "not valid JSON (line 1): shown as text" in html and "{not json" not in html
    assert '<a href="evidence/transit.security_headers/broken.json">broken.json</a>' in html
    # Markup in evidence keys and values is text, never markup.
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert "&lt;b&gt;html&lt;/b&gt;" in html


def test_manual_claims_show_the_attestation_slot(fault_run: Path) -> None:
    html = _render(fault_run)
    library = html[html.index('id="claim-REST-TOKENS-LIBRARY"'):html.index('id="claim-REST-TOKENS-KEY-HSM"')]
    edge = html[html.index('id="claim-TRANSIT-CLOUDFLARE-EDGE"'):html.index('id="claim-TRANSIT-HSTS"')]

    assert "Needs a human attestation" in library and "Attestation supplied:" in library
    assert "attestations/tokens-library.md" in library
    assert "No attestation supplied" in edge and "MANUAL" in edge


def test_the_page_is_self_contained(fault_run: Path) -> None:
    html = _render(fault_run)

    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "@import" not in html and "url(http" not in html
    assert not re.search(r"@font-face", html)


def test_the_page_is_responsive_and_print_friendly(fault_run: Path) -> None:
    html = _render(fault_run)

    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "@media (max-width: 640px)" in html and "@media print" in html


def test_a_known_secret_is_redacted_from_the_page(fault_run: Path) -> None:
    # Given evidence that (wrongly) holds a secret the run knows ...
    secret = "s3cr3t-canary-value-123"
    evidence = fault_run / "evidence" / "transit.hsts" / "hsts.json"
    data = json.loads(evidence.read_text())
    data["oops"] = secret
    evidence.write_text(json.dumps(data))
    secrets = KnownSecrets()
    secrets.add(secret, "canary password")

    html = _render(fault_run, known_secrets=secrets)

    assert secret not in html and "[REDACTED canary password" in html


def test_the_detection_matrix_appears_only_with_calibration_json(fault_run: Path) -> None:
    assert "Detection matrix" not in _render(fault_run)
    calibration = Calibration(created_at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC), rows=(
        DetectionRow(fault="tls12_enabled", description="The edge also accepts TLS 1.2",
                     claims=("TRANSIT-TLS13",), expected_check="transit.tls_versions",
                     observed_outcome=Outcome.FAIL, run_id="fault0000001"),
        DetectionRow(fault="bcrypt_cost_10", claims=("REST-PASSWORDS-BCRYPT12",),
                     expected_check="at_rest.password_hashes", observed_outcome=Outcome.PASS),
        DetectionRow(fault="clean", expected_check="transit.hsts", expected_outcome=Outcome.PASS,
                     observed_outcome=Outcome.PASS),
    ))
    (fault_run / CALIBRATION_JSON).write_text(calibration.model_dump_json(indent=2))

    html = _render(fault_run)
    matrix = html[html.index('id="matrix-h"'):]

    assert "2 of 3 detected" in matrix and "✗ 1 missed" in matrix
    assert "tls12_enabled" in matrix and "✗ MISSED" in matrix and "✓ yes" in matrix


def test_the_diff_section_names_regressions(clean_run: Path, fault_run: Path) -> None:
    diff = diff_dirs(clean_run, fault_run)
    html = _render(fault_run, diff=diff)
    section = html[html.index('id="diff-h"'):html.index('id="claims"')]

    # The earlier run is named by its id and its directory
    assert (f'Against run <span class="mono">{diff.old_run.run_id}</span> ({clean_run}):' in section)
    assert "✗ REGRESSION" in section
    assert "transit.tls_versions/TRANSIT-TLS13" in section and "new FAIL" in section
    assert "newly unverifiable" in section
