"""report.html laid out by a real headless Chromium: it fits a 1280 px screen, and on a 390 px
phone the promises' words show.

Chromium loads a copy of the page with a measuring script appended (the report itself has no
script); the script writes what it measured into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report.html import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed"),
              pytest.mark.slow]

# Every scroll container whose content is wider than itself (named by the evidence file or section
# above it), whether the page itself is wider than the window, and the promise cells of the overview
# that have no width (hidden).
_MEASURE = """<script>
const wide = [];
for (const box of document.querySelectorAll('.scroll')) {
  if (box.scrollWidth > box.clientWidth + 1) {
    const named = box.closest('.evidence, section, nav, article');
    wide.push((named && (named.querySelector('.name, h2, h3') || named).textContent || '?').trim().slice(0, 80));
  }
}
const cells = [...document.querySelectorAll('.toc td.text')];
const result = {page: document.documentElement.scrollWidth, window: window.innerWidth, wide: wide,
  promises: cells.length, hidden_promises: cells.filter(c => c.offsetWidth === 0).length};
document.body.setAttribute('data-measured', JSON.stringify(result));
</script>"""


def measure(tmp_path: Path, report: Path, width: int) -> dict[str, object]:
    assert CHROMIUM is not None
    page = tmp_path / f"measured-{width}.html"
    page.write_text(report.read_text().replace("</body>", _MEASURE + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run",
                           f"--window-size={width},900", "--dump-dom", page.as_uri()],
                          check=True, capture_output=True, text=True, timeout=180)
    found = re.search(r'data-measured="([^"]*)"', done.stdout)
    assert found, done.stdout[-500:]
    return dict(json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")))


def test_the_report_fits_1280_px(tmp_path: Path, fault_run: Path) -> None:
    measured = measure(tmp_path, write_report(fault_run), 1280)

    assert measured["page"] <= measured["window"], measured
    # No table, the HSM object list included, needs a horizontal scroll bar at 1280 px.
    assert measured["wide"] == [], measured


def test_on_a_phone_the_promise_words_show(tmp_path: Path, fault_run: Path) -> None:
    measured = measure(tmp_path, write_report(fault_run), 390)

    assert measured["page"] <= measured["window"], measured
    assert measured["promises"] == 36 and measured["hidden_promises"] == 0, measured
