"""report.html in a real headless Chromium: desktop and phone screenshots, and printing to PDF.

The screenshots of the example runs were looked at by a person and are kept in
reports/examples/; this test checks that the browser renders the page at all
(an image of the right size that is not blank, a PDF with pages).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from harness.report.html import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed"),
              pytest.mark.slow]


def chromium(tmp_path: Path, *args: str) -> None:
    assert CHROMIUM is not None
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run", *args],
                   check=True, capture_output=True, timeout=180)


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values in the decoded image data."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, width, height = 8, b"", 0, 0
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.parametrize(("name", "size"), [("desktop", "1280,900"), ("phone", "390,844")])
def test_the_report_renders_in_chromium(tmp_path: Path, fault_run: Path, name: str, size: str) -> None:
    page = write_report(fault_run)
    shot = tmp_path / f"{name}.png"

    chromium(tmp_path, f"--screenshot={shot}", f"--window-size={size}", page.as_uri())

    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == tuple(int(n) for n in size.split(","))
    assert colours > 50, "the screenshot is (nearly) blank"


def test_the_report_prints_to_pdf(tmp_path: Path, clean_run: Path) -> None:
    page = write_report(clean_run)
    pdf = tmp_path / "report.pdf"

    chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())

    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 3
