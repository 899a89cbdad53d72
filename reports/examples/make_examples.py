"""Render the example runs into OUT_DIR and take the raw screenshots the examples were cut from.

    .venv/bin/python reports/examples/make_examples.py /tmp/examples

Needs Debian's chromium. OUT_DIR/fault/report.html is the whole page of the fault
run (with its comparison against the clean run and a detection matrix), as today's
code renders it. The PNGs kept here were cropped from OUT_DIR's screenshots and
looked at by a person before they were committed.
"""

import datetime as dt
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from harness.outcomes import Outcome
from harness.report.calibration import Calibration, DetectionRow
from harness.report.commands import finalize

spec = importlib.util.spec_from_file_location(
    "report_conftest",
    str(Path(__file__).resolve().parents[2] / "tests" / "harness" / "report" / "conftest.py"),
)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
mod.build_run(out / "clean", fault=False)
mod.build_run(out / "fault", fault=True)
# fault, description, claims, expected check, expected outcome, observed outcome, run id
DETECTIONS = (
    ("tls12_enabled", "The edge also accepts TLS 1.2", ("TRANSIT-TLS13",), "transit.tls_versions",
     Outcome.FAIL, Outcome.FAIL, "fault0000001"),
    ("bcrypt_cost_10", "New passwords hashed with cost 10", ("REST-PASSWORDS-BCRYPT12",),
     "at_rest.password_hashes", Outcome.FAIL, Outcome.FAIL, None),
    ("jwt_secret_in_env_file", "JWT secret copied into .env", ("KEYS-NOT-ON-DISK",), "keys.no_key_elsewhere",
     Outcome.FAIL, Outcome.PASS, None),
    ("clean", "No fault", (), "transit.hsts", Outcome.PASS, Outcome.PASS, None),
)
cal = Calibration(
    created_at=mod.T0,
    rows=tuple(
        DetectionRow(fault=fault, description=description, claims=claims, expected_check=check,
                     expected_outcome=expected, observed_outcome=observed, run_id=run_id)
        for fault, description, claims, check, expected, observed, run_id in DETECTIONS
    ),
)
(out / "fault" / "calibration.json").write_text(cal.model_dump_json(indent=2))
now = dt.datetime(2026, 11, 30, 21, 5, tzinfo=dt.UTC)
finalize(out / "clean", None, now=now)
finalize(out / "fault", None, against=out / "clean", now=now)


def chromium(page: Path, *options: str) -> None:
    """Open ``page`` in headless Chromium with ``options`` (what to write, the window's size)."""
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={out}/profile",
         *options, page.as_uri()],
        check=True,
        capture_output=True,
        timeout=180,
    )


for page, png, size in (
    ("fault", "fault-desktop.png", "1280,900"),
    ("fault", "fault-phone.png", "390,844"),
    ("clean", "clean-desktop.png", "1280,900"),
    ("fault", "fault-full.png", "1280,20000"),
    ("fault", "fault-phone-full.png", "390,30000"),
):
    chromium(out / page / "report.html", "--hide-scrollbars", f"--screenshot={out / png}",
             f"--window-size={size}")
chromium(out / "fault" / "report.html", f"--print-to-pdf={out}/fault.pdf", "--no-pdf-header-footer")
print(f"ok: {out / 'fault' / 'report.html'}")
