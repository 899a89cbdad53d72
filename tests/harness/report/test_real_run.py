"""A real audit of the reference service, finalised: the report and the bundle from the
plugin's own output, not from hand-made results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.layout import REPORT_HTML, load_results
from harness.report.seal import SealStatus, verify

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_real_transit_run_renders_and_seals(tmp_path: Path, clean_stack) -> None:
    # Given a real run of the transit checks against the clean reference service ...
    report_dir = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--target", str(clean_stack.profile_path),
                           "--report-dir", str(report_dir), "--only", "transit"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    # ... then the run finalised it: the report shows the real evidence and the bundle, sealed by a
    # throwaway key, is intact but not trusted.
    html = (report_dir / REPORT_HTML).read_text()
    assert "Gate passed" in html
    assert "Protocol versions tried against the edge" in html
    assert "GET https://" in html
    assert verify(report_dir).status is SealStatus.UNTRUSTED
    run = load_results(report_dir)
    assert {r.check_id for r in run.results} >= {"transit.tls_versions", "transit.hsts"}
